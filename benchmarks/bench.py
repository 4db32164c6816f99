"""The seed workload, timed side by side: fcnet, PyTorch eager and torch.compile, JAX (XLA's default matmuls and
Eigen's), the seed 001 class, Keras 3 (if installed).

``fcnet`` is the ordinary loop (compiled by Numba, see fcnet.engines.numba); ``fcnet-np`` is the same loop on the
NumPy reference engine, so the table shows what the compiled helper earns.

784-300-10, ReLU/softmax, cross-entropy, SGD lr 0.1, float32, 60 000 Fashion-MNIST images. Every
contender starts from fcnet's initial weights and sees the same permutation each epoch; after one
warm-up epoch each, the contenders take turns epoch by epoch (the one that goes first rotates), and
each row reports the median, min and max over the timed epochs. Run through ``make bench``, which
unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE so NumPy's OpenBLAS picks its best kernel for this CPU.

    python benchmarks/bench.py [--batch-sizes 8,16,64,128,256] [--rounds 4] [--out benchmarks/results]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fcnet
from fcnet.compare import FcnetRunner, NotInstalled, make_runner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed001 import SeedRunner  # noqa: E402


def flop_per_image(model):
    """Forward, every layer's dW, and dx of every layer but the first: 2·in·out each."""
    sizes = [layer.input_dim * layer.units for layer in model.layers]
    return 2 * (2 * sum(sizes) + sum(sizes[1:]))


def lab_model(optimizer, hidden=(300,)):
    model = fcnet.Sequential([*(fcnet.Dense(h, "relu") for h in hidden), fcnet.Dense(10, "softmax")], seed=0)
    model.build(784)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def numpy_reference(model, batch_size):
    """fcnet on its NumPy engine, the readable reference the compiled loop transcribes, on its own copy."""
    runner = FcnetRunner(model.astype(model.dtype), batch_size, engine="numpy")
    runner.name = "fcnet-np"
    return runner


def sgemm_peak():
    """Best GFLOP/s of NumPy's float32 matmul on 2048² matrices: the ceiling for this machine."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def blas_info():
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "architecture", "num_threads", "version")
    return [{k: i.get(k) for k in keys} for i in threadpool_info()]


def race(names, optimizer, batch_size, rounds, data, extra=(), hidden=(300,)):
    """Train each contender for 1 + ``rounds`` epochs on shared orders; returns rows of results.

    ``ratio_to_fcnet`` is the median of the per-round ratios of a contender's epoch to fcnet's (above 1:
    fcnet is faster); ``ratio_to_torch`` is fcnet's median over torch's.
    """
    (x, y), (xt, yt) = data
    model = lab_model(optimizer, hidden)
    runners = []
    for name in names:
        try:
            runners.append(make_runner(name, model, batch_size))
        except NotInstalled:
            print(f"  {name}: not installed", flush=True)
    runners += [make(model, batch_size) for make in extra]
    orders = np.random.default_rng(0)
    seconds = {r.name: [] for r in runners}
    for epoch in range(1 + rounds):
        order = orders.permutation(len(x))
        shift = epoch % len(runners)
        for r in runners[shift:] + runners[:shift]:
            seconds[r.name].append(r.train_epoch(x, y, order)[0])
    rows = []
    for r in runners:
        timed = seconds[r.name][1:]  # the first epoch is the warm-up
        rows.append({"contender": r.name, "batch_size": batch_size, "optimizer": optimizer.get_config()["name"]
                     + (" momentum" if optimizer.get_config().get("momentum") else ""),
                     "hidden": list(hidden), "median": statistics.median(timed), "min": min(timed), "max": max(timed),
                     "ratio_to_fcnet": statistics.median(t / f for t, f in zip(timed, seconds["fcnet"][1:])),
                     "epochs": 1 + rounds, "test_accuracy": r.evaluate(xt, yt)[1]})
    torch_median = next((row["median"] for row in rows if row["contender"] == "torch"), None)
    for row in rows:
        row["ratio_to_torch"] = row["median"] / torch_median if torch_median else None
        row["gflops"] = flop_per_image(model) * len(x) / row["median"] / 1e9
    return rows


def predict_race(data, repeats=10):
    """Seconds to predict the 10 000 test images: fcnet vs torch (no_grad), alternating, medians."""
    (_, _), (xt, _) = data
    model = lab_model(fcnet.SGD(lr=0.1))
    runners = [make_runner("fcnet", model, 64)]
    try:
        runners.append(make_runner("torch", model, 64))
    except NotInstalled:
        pass
    times = {r.name: [] for r in runners}
    for _ in range(repeats + 1):
        for r in runners:
            times[r.name].append(_timed(lambda r=r: r.predict(xt)))
    return {name: statistics.median(t[1:]) for name, t in times.items()}


def peak_rss_mb(contender):
    """Peak RSS of a fresh process that loads the data and trains one epoch of ``contender``."""
    out = subprocess.run([sys.executable, __file__, "--rss-of", contender], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _train_one_epoch_for_rss(contender):
    data = fcnet.datasets.load("fashion-mnist")
    (x, y), _ = data
    x = x.reshape(len(x), -1)
    model = lab_model(fcnet.SGD(lr=0.1))
    runner = {"seed001": lambda: SeedRunner(model, 64, 0.1), "fcnet-np": lambda: numpy_reference(model, 64)}.get(
        contender, lambda: make_runner(contender, model, 64))()
    runner.train_epoch(x, y, np.random.default_rng(0).permutation(len(x)))
    # VmHWM, not getrusage: ru_maxrss survives exec and would report the parent's size at fork.
    status = Path("/proc/self/status").read_text()
    print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sgd = [r for r in rows if r["optimizer"] == "sgd"]
    batches = sorted({r["batch_size"] for r in sgd})
    names = [n for n in ("fcnet", "fcnet-np", "torch", "torch-compile", "jax", "jax-eigen", "keras",
             "seed001") if any(r["contender"] == n for r in sgd)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [next((r["median"] for r in sgd if r["contender"] == name and r["batch_size"] == b), np.nan)
                  for b in batches]
        label = {"fcnet": "fcnet (compiled loop)", "fcnet-np": "fcnet (NumPy engine)"}.get(name, name)
        bars = ax.bar(np.arange(len(batches)) + k * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(np.arange(len(batches)) + width * (len(names) - 1) / 2, [f"batch {b}" for b in batches])
    ax.set_ylabel("seconds per epoch (median)")
    ax.set_title("784-300-10 SGD on 60 000 Fashion-MNIST images, float32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def contended(data, rounds):
    """The lab network (SGD, batch 64) idle and beside one busy process (``while True: pass``), with fcnet's
    threads chosen from the free cores (the default) and with one per core (the old behaviour); each
    setting takes its turn in every round, and each cell is the median epoch after the first of each fit."""
    (x, y), _ = data
    cores = os.cpu_count()
    times = {}
    for _ in range(rounds):
        for busy in (False, True):
            proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                time.sleep(0.3)
                for threads in (None, cores):
                    history = lab_model(fcnet.SGD(lr=0.1)).fit(x, y, epochs=3, batch_size=64, verbose=0,
                                                               threads=threads)
                    times.setdefault((busy, threads), []).extend(history.history["epoch_seconds"][1:])
            finally:
                if proc:
                    proc.kill()
                    proc.wait()
    cell = {key: statistics.median(value) for key, value in times.items()}
    return {label: {"seconds": cell[True, threads], "idle_seconds": cell[False, threads],
                    "ratio_to_idle": cell[True, threads] / cell[False, threads]}
            for label, threads in (("free cores", None), (f"{cores} threads", cores))}


def print_contended(result):
    print("beside one busy process, lab network, SGD batch 64: " + "; ".join(
        f"{label}: {r['seconds']:.3f} s/epoch, {r['ratio_to_idle']:.2f}× its idle {r['idle_seconds']:.3f}"
        for label, r in result.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="8,16,64,128,256")
    parser.add_argument("--rounds", type=int, default=4, help="timed epochs per contender (after one warm-up)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--rss-of", help=argparse.SUPPRESS)
    parser.add_argument("--contended-only", action="store_true", help="only the busy-machine measurement")
    args = parser.parse_args()
    if args.rss_of:
        return _train_one_epoch_for_rss(args.rss_of)
    if args.contended_only:
        data = fcnet.datasets.load("fashion-mnist")
        print_contended(contended(((data[0][0].reshape(-1, 784), data[0][1]), None), args.rounds))
        return None

    info = blas_info()
    print("BLAS:", ", ".join(f"{i['internal_api']} {i['version'] or ''} {i['architecture'] or ''} "
                             f"({i['num_threads']} threads)" for i in info))
    peak = sgemm_peak()
    print(f"NumPy sgemm peak (2048²): {peak:.0f} GFLOP/s", flush=True)
    data = fcnet.datasets.load("fashion-mnist")
    data = ((data[0][0].reshape(-1, 784), data[0][1]), (data[1][0].reshape(-1, 784), data[1][1]))
    rows = []
    for batch in map(int, args.batch_sizes.split(",")):
        extra = [numpy_reference] + ([lambda m, b: SeedRunner(m, b, 0.1)] if batch == 64 else [])
        names = ["fcnet", "torch", "torch-compile", "jax", "jax-eigen"] + (["keras"] if batch == 64 else [])
        print(f"SGD, batch {batch} ...", flush=True)
        rows += race(names, fcnet.SGD(lr=0.1), batch, args.rounds, data, extra)
    for optimizer in (fcnet.SGD(lr=0.05, momentum=0.9), fcnet.Adam(lr=1e-3)):
        print(f"{optimizer.get_config()['name']}{' momentum' if optimizer.get_config().get('momentum') else ''}, "
              "batch 64 ...", flush=True)
        rows += race(["fcnet", "torch", "torch-compile", "jax", "jax-eigen"], optimizer, 64, args.rounds, data,
                     [numpy_reference])
    predict = predict_race(data)
    rss = {name: peak_rss_mb(name) for name in ("fcnet", "fcnet-np", "torch", "seed001")}
    busy = contended(data, args.rounds)

    header = (f"{'optimizer':<13} {'batch':>5} {'contender':<13} {'median s':>9} {'min':>7} {'max':>7} "
              f"{'÷ torch':>8} {'GFLOP/s':>8} {'% peak':>7} {'test acc':>8}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_to_torch']:.2f}" if r["ratio_to_torch"] else "—"
        print(f"{r['optimizer']:<13} {r['batch_size']:>5} {r['contender']:<13} {r['median']:>9.3f} {r['min']:>7.3f} "
              f"{r['max']:>7.3f} {ratio:>8} {r['gflops']:>8.0f} {100 * r['gflops'] / peak:>6.0f}% "
              f"{r['test_accuracy']:>8.4f}")
    print("\npredict 10 000 test images: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in predict.items())
          + (f"; fcnet ÷ torch = {predict['fcnet'] / predict['torch']:.2f}" if "torch" in predict else ""))
    print("peak RSS, one training epoch in a fresh process: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))
    print_contended(busy)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"python": platform.python_version(), "numpy": np.__version__, "blas": info,
                          "cpu_count": os.cpu_count(), "sgemm_peak_gflops": peak},
              "rows": rows, "predict_seconds": predict, "peak_rss_mb": rss, "contended": busy}
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    chart(rows, args.out / "bench.png")
    print(f"\nwrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
