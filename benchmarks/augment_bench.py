"""What augmentation costs: an epoch of 784-800-10 (Simard's MLP) at batch 128 on MNIST, with and without it.

Each round trains one plain epoch and one augmented epoch (every distortion: shift, rotate, scale, elastic), in
turns, on the compiled engine; an augmented epoch's time is the distortion of the 60 000 images plus the training
steps. Prints the medians and the median per-round ratio (augmented ÷ plain; issue 13 asks ≤ 1.5), and which
BLAS kernel ran. Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.

    python benchmarks/augment_bench.py [--rounds 5] [--data-dir DIR] [--out benchmarks/results/augment.json]
"""

import argparse
import json
import statistics
import time

import fcnet
from fcnet import augment, datasets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data-dir")
    parser.add_argument("--augment", default="shift,rotate,scale,elastic")
    parser.add_argument("--out")
    args = parser.parse_args()
    (x, y), _ = datasets.load("mnist", args.data_dir)
    x = x.reshape(len(x), -1)
    distort = augment.parse(args.augment)
    model = fcnet.Sequential([fcnet.Dense(800, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile(fcnet.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:5000], y[:5000], epochs=1, batch_size=128, verbose=0, augment=distort)  # compile, first touch
    plain, augmented, distortion = [], [], []
    for r in range(args.rounds):
        for kind in (("plain", "augmented") if r % 2 == 0 else ("augmented", "plain")):
            start = time.perf_counter()
            history = model.fit(x, y, epochs=1, batch_size=128, verbose=0,
                                augment=distort if kind == "augmented" else None)
            (augmented if kind == "augmented" else plain).append(time.perf_counter() - start)
            if kind == "augmented":
                distortion.append(history.history["augment_seconds"][0])
    ratio = statistics.median(a / p for a, p in zip(augmented, plain))
    result = {"workload": "MNIST 784-800-10 ReLU/softmax, SGD, batch 128, compiled engine",
              "augment": args.augment, "engine": history.engine, "threads": history.threads,
              "plain_seconds": statistics.median(plain), "augmented_seconds": statistics.median(augmented),
              "distortion_seconds": statistics.median(distortion), "ratio": ratio, "rounds": args.rounds}
    try:
        from threadpoolctl import threadpool_info

        result["blas"] = [(i.get("internal_api"), i.get("architecture")) for i in threadpool_info()]
    except ImportError:
        pass
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
