"""fcnet against JAX's compiled epoch (``fcnet.compare.JaxRunner``) on the rows of the speed issue, side by side.

Fashion-MNIST 60 000, float32, through ``bench.race`` (one warm-up epoch each, then ``--rounds`` rounds in which
the contenders take turns on the same permutation): medians of seconds per epoch and of the per-round ratios
(JAX ÷ fcnet: above 1, fcnet is faster). ``make bench`` has the same JAX rows for the lab network. Run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.

    python benchmarks/jax_race.py [--rounds 5]
"""

import argparse
import sys
from pathlib import Path

import fcnet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import race  # noqa: E402

ROWS = [((300,), lambda: fcnet.SGD(0.1), 8), ((300,), lambda: fcnet.SGD(0.1), 64),
        ((300,), lambda: fcnet.SGD(0.1), 256), ((300,), lambda: fcnet.Adam(1e-3), 64),
        ((1024, 512), lambda: fcnet.SGD(0.1), 64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = fcnet.datasets.load("fashion-mnist")
    data = ((data[0][0].reshape(-1, 784), data[0][1]), (data[1][0].reshape(-1, 784), data[1][1]))
    for hidden, optimizer, batch in ROWS:
        rows = {row["contender"]: row for row in race(["fcnet", "jax"], optimizer(), batch, args.rounds, data,
                                                        hidden=hidden)}
        fc, jx = rows["fcnet"], rows["jax"]
        print(f"784-{'-'.join(map(str, hidden))}-10 {fc['optimizer']:<4} batch {batch:>3}: fcnet {fc['median']:.3f} "
              f"s/epoch, JAX {jx['median']:.3f}, JAX ÷ fcnet {jx['ratio_to_fcnet']:.2f}", flush=True)


if __name__ == "__main__":
    main()
