"""How many threads the matrix products get: a fixed number, or, by default, the cores other processes leave free.

OpenBLAS's threads spin while they wait for work. On a machine where another program keeps a core busy, two
of them on two cores fight it for the CPU: the lab network's epoch (batch 64, 2 cores) took 0.80 s with one
competing busy process against 0.21 s idle, and 0.27 s with one thread. So by default :class:`BlasThreads`
measures, between epochs, how much CPU the rest of the machine used while the last one ran (``/proc/stat``
minus this process's own time; before the first, the other tasks running at that moment) and
gives OpenBLAS the cores left, never more than it had when ``fit``
started (so ``OPENBLAS_NUM_THREADS`` or an outer ``threadpool_limits`` still bound it). ``FCNET_THREADS`` or
``fit(threads=N)`` fixes the number instead.
"""

import os
import time

from . import blas

__all__ = ["BlasThreads", "MIN_WINDOW"]

MIN_WINDOW = 0.1  # seconds: shorter intervals are too coarse for the kernel's CPU counters (10 ms ticks)


def _sample():
    """``(wall seconds, CPU seconds the machine spent busy, CPU seconds this process spent)``, or ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    ticks = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return time.monotonic(), (user + nice + system + irq + softirq + steal) / ticks, own.user + own.system


def _others_running():
    """Tasks of other processes running or ready to run now (``/proc/loadavg`` minus this process's running
    threads, OpenBLAS's spinning ones included), or ``None``."""
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
        env = os.environ.get("FCNET_THREADS", "").strip()
        if not env:
            return None
        threads = env
    try:
        value = int(threads)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(threads).strip():
        raise ValueError(f"threads (FCNET_THREADS) must be a positive integer, got {threads!r}")
    return value


class BlasThreads:
    """A context for one ``fit``: sets OpenBLAS's thread count, adapts it before each epoch, restores it after.

    Parameters
    ----------
    threads : int, optional
        A fixed count; by default ``$FCNET_THREADS``, else chosen before every epoch from the free cores.
    """

    def __init__(self, threads=None):
        self.fixed = _parse(threads)
        self.start = blas.get_threads()
        self.threads = self.fixed or self.start
        self._last = None

    def __enter__(self):
        if self.fixed and self.start:
            blas.set_threads(self.fixed)
        elif self.start:  # the first epoch: from the tasks running right now (no window has been measured yet)
            others = _others_running()
            if others is not None:
                self._choose(others)
        self._last = _sample()
        return self

    def _choose(self, others):
        """Give OpenBLAS the cores that ``others`` (cores' worth of other work) leave, within 1..start."""
        self.threads = max(1, min(self.start, int((os.cpu_count() or 1) - others + 0.5)))
        blas.set_threads(self.threads)

    def __exit__(self, *exc):
        if self.start:
            blas.set_threads(self.start)

    def before_epoch(self):
        """Choose the count for the next epoch from what the rest of the machine did since the last choice."""
        if self.fixed or not self.start or self._last is None:
            return self.threads
        now = _sample()
        wall = now[0] - self._last[0]
        if wall < MIN_WINDOW:
            return self.threads  # keep counting: the window grows until it can be read
        self._choose(max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / wall)
        self._last = now
        return self.threads
