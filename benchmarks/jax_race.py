"""fcnet against its compiled peers on the rows of the speed issue, side by side: JAX's compiled epoch with XLA's
default matmuls and with Eigen's (``fcnet.compare.JaxRunner``, ``JaxEigenRunner``), ``torch.compile`` of a
functional step (``TorchCompileRunner``) and PyTorch eager.

Fashion-MNIST 60 000, float32, through ``bench.race`` (one warm-up epoch each, then ``--rounds`` rounds in which
the contenders take turns on the same permutation): medians of seconds per epoch and of the per-round ratios
(peer ÷ fcnet: above 1, fcnet is faster), with NumPy's sgemm peak before and after (this machine has a slow state
that halves it for a whole process). ``make bench`` has the same peers for the lab network. Run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.

    python benchmarks/jax_race.py [--rounds 5] [--peers jax,jax-eigen,torch-compile,torch] [--out FILE.json]
"""

import argparse
import json
import sys
from pathlib import Path

import fcnet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import blas_info, race, sgemm_peak  # noqa: E402

ROWS = [((300,), lambda: fcnet.SGD(0.1), 8), ((300,), lambda: fcnet.SGD(0.1), 64),
        ((300,), lambda: fcnet.SGD(0.1), 256), ((300,), lambda: fcnet.Adam(1e-3), 64),
        ((1024, 512), lambda: fcnet.SGD(0.1), 64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peers", default="jax,jax-eigen,torch-compile,torch")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    peers = args.peers.split(",")
    info, peak = blas_info(), sgemm_peak()
    print("BLAS:", info, f"sgemm peak {peak:.0f} GFLOP/s", flush=True)
    data = fcnet.datasets.load("fashion-mnist")
    data = ((data[0][0].reshape(-1, 784), data[0][1]), (data[1][0].reshape(-1, 784), data[1][1]))
    results = []
    for hidden, optimizer, batch in ROWS:
        rows = race(["fcnet", *peers], optimizer(), batch, args.rounds, data, hidden=hidden)
        results += rows
        fc = rows[0]
        print(f"784-{'-'.join(map(str, hidden))}-10 {fc['optimizer']:<4} batch {batch:>3}: fcnet {fc['median']:.3f} "
              "s/epoch; " + ", ".join(f"{r['contender']} {r['median']:.3f} (÷ fcnet {r['ratio_to_fcnet']:.2f})"
                                      for r in rows[1:]), flush=True)
    after = sgemm_peak()
    print(f"sgemm peak after: {after:.0f} GFLOP/s")
    if args.out:
        args.out.write_text(json.dumps({"blas": info, "sgemm_peak_gflops": [peak, after], "rounds": args.rounds,
                                        "rows": results}, indent=2))


if __name__ == "__main__":
    main()
