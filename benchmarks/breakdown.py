"""Where a compiled epoch's time goes, per row of the speed issue: the matrix products against everything else.

For each row (Fashion-MNIST 60 000, float32) the compiled engine trains whole epochs, and in turns with them a
compiled loop makes exactly the epoch's GEMMs — per step the forward ``x W`` of every layer, ``δ Wᵀ`` of every
layer but the first and ``xᵀ δ`` of every layer, on buffers of the same shapes, through the same OpenBLAS entry
point — and nothing else. The epoch minus its GEMMs is the rest: gathering and scaling the batch, bias and
activation, the softmax cross-entropy, the derivatives, the bias sums and the optimizer's element-wise update, and
the Python between compiled calls. ``ceiling`` is the epoch's GEMM work at the sgemm peak measured on 2048² matrices.
Medians over ``--rounds``; run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.

    python benchmarks/breakdown.py [--rounds 5] [--out benchmarks/results/breakdown.json]
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

import fcnet
from fcnet import blas
from fcnet.compare import FcnetRunner
from fcnet.engines.numba_kernels import gemm as _gemm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import blas_info, flop_per_image, lab_model, sgemm_peak  # noqa: E402
from jax_race import ROWS  # noqa: E402


@numba.njit(cache=True)
def _gemms_of_an_epoch(gemm, n, batch, one, zero, acts, deltas, weights, grads):
    """The GEMMs of ``fcnet.engines.numba._steps`` for an epoch of ``n`` rows, in its order, and nothing else."""
    depth = len(weights)
    for lo in range(0, n, batch):
        rows = min(batch, n - lo)
        for layer in range(depth):
            k, m = weights[layer].shape
            _gemm(gemm, False, False, rows, m, k, one, acts[layer], k, weights[layer], m, zero, acts[layer + 1], m)
        for layer in range(depth - 1, -1, -1):
            k, m = weights[layer].shape
            if layer > 0:
                _gemm(gemm, False, True, rows, k, m, one, deltas[layer], m, weights[layer], m, zero,
                      deltas[layer - 1], k)
            _gemm(gemm, True, False, k, m, rows, one, acts[layer], k, deltas[layer], m, zero, grads[layer], m)


def gemm_buffers(model, batch):
    """Buffers shaped as the compiled engine's, filled with small random numbers (no subnormals)."""
    rng = np.random.default_rng(0)
    widths = [model.input_dim] + [layer.units for layer in model.layers]
    acts = tuple(rng.random((batch, w), dtype=np.float32) for w in widths)
    deltas = tuple(rng.random((batch, w), dtype=np.float32) * 1e-3 for w in widths[1:])
    weights = tuple(layer.params["W"].copy() for layer in model.layers)
    grads = tuple(np.empty_like(w) for w in weights)
    return acts, deltas, weights, grads


def breakdown(hidden, optimizer, batch, rounds, x, y, peak):
    model = lab_model(optimizer, hidden)
    runner = FcnetRunner(model, batch, engine="numba")
    gemm, buffers = blas.function("gemm", np.float32), gemm_buffers(model, batch)
    orders = np.random.default_rng(0)
    epochs, gemms = [], []
    for r in range(1 + rounds):  # the first round is the warm-up (compiling, first touch)
        order = orders.permutation(len(x))
        timed = [None, None]
        for turn in ((0, 1) if r % 2 else (1, 0)):
            start = time.perf_counter()
            if turn == 0:
                runner.train_epoch(x, y, order)
            else:
                _gemms_of_an_epoch(gemm, len(x), batch, np.float32(1), np.float32(0), *buffers)
            timed[turn] = time.perf_counter() - start
        if r:
            epochs.append(timed[0])
            gemms.append(timed[1])
    flop = flop_per_image(model) * len(x)
    epoch, gemm_s = statistics.median(epochs), statistics.median(gemms)
    return {"hidden": list(hidden), "optimizer": optimizer.get_config()["name"], "batch_size": batch,
            "steps": math.ceil(len(x) / batch), "epoch_seconds": epoch, "gemm_seconds": gemm_s,
            "rest_seconds": epoch - gemm_s, "gemm_share": gemm_s / epoch, "gemm_gflops": flop / gemm_s / 1e9,
            "ceiling_seconds": flop / peak / 1e9, "of_ceiling": flop / peak / 1e9 / epoch,
            "rest_us_per_step": (epoch - gemm_s) / math.ceil(len(x) / batch) * 1e6}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    (x, y), _ = fcnet.datasets.load("fashion-mnist")
    x = x.reshape(len(x), -1)
    peak = sgemm_peak()
    rows = [breakdown(hidden, make(), batch, args.rounds, x, y, peak) for hidden, make, batch in ROWS]
    print(f"sgemm peak {peak:.0f} GFLOP/s")
    print(f"{'row':<28} {'epoch s':>8} {'GEMM s':>7} {'GEMM %':>7} {'GEMM GF/s':>9} {'rest s':>7} {'rest µs/step':>12} "
          f"{'ceiling s':>9} {'% of ceiling':>12}")
    for r in rows:
        name = f"784-{'-'.join(map(str, r['hidden']))}-10 {r['optimizer']} b{r['batch_size']}"
        print(f"{name:<28} {r['epoch_seconds']:>8.3f} {r['gemm_seconds']:>7.3f} {100 * r['gemm_share']:>6.0f}% "
              f"{r['gemm_gflops']:>9.0f} {r['rest_seconds']:>7.3f} {r['rest_us_per_step']:>12.1f} "
              f"{r['ceiling_seconds']:>9.3f} {100 * r['of_ceiling']:>11.0f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"sgemm_peak_gflops": peak, "blas": blas_info(), "rounds": args.rounds, "rows": rows}, f,
                      indent=2)


if __name__ == "__main__":
    main()
