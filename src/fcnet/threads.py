"""How many threads the matrix products get: a fixed number, or the cores other processes leave free when a fit starts.

OpenBLAS's threads spin while they wait for work. On a machine where another program keeps a core busy, two
of them on two cores fight it for the CPU: the lab network's epoch (batch 64, 2 cores) took 0.80 s beside one
busy process against 0.21 s idle, and 0.27 s with one thread. So :func:`choose` gives OpenBLAS the cores
that the other tasks running at that moment leave (``/proc/loadavg`` minus this process's running threads),
never more than it has (so ``OPENBLAS_NUM_THREADS`` or an outer ``threadpool_limits`` still bound it);
``FCNET_THREADS`` or ``fit(threads=N)`` fixes the number instead.

The count is chosen once per fit and recorded (``history.threads``; a run's checkpoint and metrics.json),
not changed between epochs: OpenBLAS's products round differently with another thread count (1 thread against
2 always; with its AVX-512 kernels 2 and 3 differ too, with the AVX2 ones they agree), so a count that followed
the load would make a seeded run depend on what else the machine was doing. Give the recorded count to repeat a
run bit for bit.
"""

import os
import time

from . import blas

__all__ = ["choose", "BlasThreads"]


def _others_running(samples=5, interval=0.001):
    """Tasks of other processes that keep running: the least, over ``samples`` looks ``interval`` seconds apart,
    of those running or ready to run (``/proc/loadavg`` minus this process's running threads, OpenBLAS's
    spinning ones included), so that a task that ran for a moment does not count; ``None`` where that cannot
    be read."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        counts.append(_others_running_now())
        if counts[-1] in (None, 0):
            return counts[-1]
    return min(counts)


def _others_running_now():
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat") as f:
                own += f.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError, ValueError):
        return None
    return max(0, running - own)


def _parse(threads):
    if threads is None:
        threads = os.environ.get("FCNET_THREADS", "").strip() or None
        if threads is None:
            return None
    try:
        value = int(threads)
    except (TypeError, ValueError):
        value = 0
    if isinstance(threads, bool) or value < 1 or str(value) != str(threads).strip():
        raise ValueError(f"threads (FCNET_THREADS) must be a positive integer, got {threads!r}")
    return value


def choose(threads=None):
    """The thread count for a fit: ``threads``, else ``$FCNET_THREADS``, else the cores other tasks leave free
    (at least 1, at most what OpenBLAS has now); ``None`` where OpenBLAS's count cannot be set."""
    fixed = _parse(threads)
    start = blas.get_threads()
    if fixed or start is None:
        return fixed if start is not None else None
    others = _others_running()
    if others is None:
        return start
    return max(1, min(start, (os.cpu_count() or 1) - others))


class BlasThreads:
    """A context for one fit: OpenBLAS uses :func:`choose`'s count inside it and its own count again after.

    Parameters
    ----------
    threads : int, optional
        A fixed count; by default ``$FCNET_THREADS``, else the free cores (see :func:`choose`).
    """

    def __init__(self, threads=None):
        self.threads = choose(threads)
        self._start = None

    def __enter__(self):
        self._start = blas.get_threads()
        if self.threads is not None:
            blas.set_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            blas.set_threads(self._start)
