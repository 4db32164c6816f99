"""fcnet against JAX's compiled epoch (``fcnet.compare.JaxRunner``) on the rows of the speed issue, side by side.

Fashion-MNIST 60 000, float32; each row: one warm-up epoch each, then ``--rounds`` rounds in which the two take
turns (who goes first alternates) on the same permutation; medians of seconds per epoch and of the per-round
ratios (JAX ÷ fcnet: above 1, fcnet is faster). Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.

    python benchmarks/jax_race.py [--rounds 5]
"""

import argparse
import statistics

import numpy as np

import fcnet
from fcnet.compare import make_runner

ROWS = [("784-300-10 SGD", (300,), lambda: fcnet.SGD(0.1), 8),
        ("784-300-10 SGD", (300,), lambda: fcnet.SGD(0.1), 64),
        ("784-300-10 SGD", (300,), lambda: fcnet.SGD(0.1), 256),
        ("784-300-10 Adam", (300,), lambda: fcnet.Adam(1e-3), 64),
        ("784-1024-512-10 SGD", (1024, 512), lambda: fcnet.SGD(0.1), 64)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    (x, y), _ = fcnet.datasets.load("fashion-mnist")
    x, y = x.reshape(len(x), -1), y.astype(np.intp)
    rng = np.random.default_rng(0)
    for name, hidden, optimizer, batch in ROWS:
        model = fcnet.Sequential([*(fcnet.Dense(h, "relu") for h in hidden), fcnet.Dense(10, "softmax")], seed=0)
        model.build(784)
        model.compile(optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
        runners = [make_runner("fcnet", model.astype("float32"), batch), make_runner("jax", model, batch)]
        times = {r.name: [] for r in runners}
        for r in range(args.rounds + 1):
            order = rng.permutation(len(x))
            for runner in runners[r % 2:] + runners[:r % 2]:
                seconds, _ = runner.train_epoch(x, y, order)
                if r:
                    times[runner.name].append(seconds)
        ratio = statistics.median(j / f for j, f in zip(times["jax"], times["fcnet"]))
        print(f"{name:<22} batch {batch:>3}: fcnet {statistics.median(times['fcnet']):.3f} s/epoch, "
              f"JAX {statistics.median(times['jax']):.3f}, JAX ÷ fcnet {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
