"""One BLAS thread or two, per GEMM shape: every GEMM the speed issue's rows make (784-300-10 and 784-1024-512-10,
batch 8, 64 and 256: the forward ``x W``, ``δ Wᵀ`` and ``xᵀ δ``, and ``δ Wᵀ``'s transpose ``W δᵀ``, the same
product the other way round), each in a compiled loop of back-to-back calls through the OpenBLAS entry point the
compiled engine uses, one thread and two in turns, medians of 5 rounds.
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset. Writes a JSON list of rows to ``--out``.

    python benchmarks/gemm_threads.py [--out benchmarks/results/gemm_threads.json]
"""

import argparse
import json
import statistics
import time

import numba
import numpy as np

from fcnet import blas
from fcnet.engines.numba_kernels import gemm as _gemm


@numba.njit(cache=True)
def _repeat(gemm, reps, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    for _ in range(reps):
        _gemm(gemm, trans_a, trans_b, m, n, k, np.float32(1), a, lda, b, ldb, np.float32(0), c, ldc)


def gemms(batch, k, m, rng):
    """The three GEMMs of a Dense layer ``k → m`` at ``batch`` rows: name → arguments of :func:`_repeat`."""
    x, w = rng.random((batch, k), dtype=np.float32), rng.random((k, m), dtype=np.float32)
    d = rng.random((batch, m), dtype=np.float32)
    z, dx, g = np.empty((batch, m), np.float32), np.empty((batch, k), np.float32), np.empty((k, m), np.float32)
    return {f"x W {batch}x{k}x{m}": (False, False, batch, m, k, x, k, w, m, z, m),
            f"d Wt {batch}x{m}x{k}": (False, True, batch, k, m, d, m, w, m, dx, k),
            f"W dt {batch}x{m}x{k}": (False, True, k, batch, m, w, m, d, m, np.empty((k, batch), np.float32), batch),
            f"xt d {k}x{m} k={batch}": (True, False, k, m, batch, x, k, d, m, g, m)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    gemm, rng, rows = blas.function("gemm", np.float32), np.random.default_rng(0), []
    for batch in (8, 64, 256):
        for k, m in ((784, 300), (300, 10), (784, 1024), (1024, 512)):
            for name, call in gemms(batch, k, m, rng).items():
                flop = 2 * call[2] * call[3] * call[4]
                reps = max(20, int(2e8 / flop))
                _repeat(gemm, 2, *call)
                times = {1: [], 2: []}
                for r in range(args.rounds):
                    for threads in ((1, 2) if r % 2 else (2, 1)):
                        blas.set_threads(threads)
                        start = time.perf_counter()
                        _repeat(gemm, reps, *call)
                        times[threads].append((time.perf_counter() - start) / reps * 1e6)
                one, two = statistics.median(times[1]), statistics.median(times[2])
                rows.append({"gemm": name, "mflop": flop / 1e6, "us_1_thread": one, "us_2_threads": two})
                print(f"{name:<22} {flop / 1e6:7.2f} MFLOP  1 thread {one:8.1f} µs  2 threads {two:8.1f} µs  "
                      f"ratio {one / two:5.2f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
