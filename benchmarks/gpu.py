"""fcnet's CUDA engine against PyTorch (eager, and one step captured in a CUDA graph) and JAX (the whole epoch
compiled with ``lax.scan``), side by side on one GPU; then Cireşan et al. 2010's MLP.

The seed workload: 784-300-10 ReLU/softmax, cross-entropy, SGD lr 0.1, float32, 60 000 MNIST images resident on
the GPU as uint8 and scaled per batch. Every contender starts from fcnet's initial weights and trains the same
permutation each round; after one warm-up epoch each, they take turns round by round (who goes first rotates),
and each row gives the median seconds per epoch and the median of the per-round ratios to fcnet. fcnet trains
every batch of an epoch, the partial last one included; the PyTorch graph and JAX train the full batches only
(60 000 = 937 × 64 + 32 at batch 64). PyTorch eager is timed on at most ``--eager-steps`` steps and scaled to the
epoch (at batch 8 a full eager epoch takes seconds). "fcnet cuda gemm head" is the engine with its fused output
layer kernels switched off (``HEAD_MAX`` 0): the output layer by cuBLAS and the softmax kernel.

    python benchmarks/gpu.py --data DIR [--rounds 3] [--out FILE.json] [--ciresan-epochs 30]
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU with CuPy and PyTorch

import numpy as np  # noqa: E402

import fcnet  # noqa: E402
from fcnet.engines import make_engine  # noqa: E402
from fcnet.training import train_epoch  # noqa: E402

CIRESAN = (2500, 2000, 1500, 1000, 500)


def seed_model(hidden=(300,), optimizer=None, dtype="float32"):
    layers = [fcnet.Dense(hidden[0], "relu", input_dim=784), *(fcnet.Dense(h, "relu") for h in hidden[1:]),
              fcnet.Dense(10, "softmax")]
    model = fcnet.Sequential(layers, seed=0, dtype=dtype)
    model.compile(optimizer or fcnet.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def synchronize():
    import cupy

    cupy.cuda.Device().synchronize()
    import torch

    torch.cuda.synchronize()


class Fcnet:
    """``fused_head=False``: the output layer by cuBLAS and the softmax kernel, as outputs wider than
    ``fcnet.engines.cuda.HEAD_MAX`` are (the engine before the fused head kernels)."""

    def __init__(self, model, x, y, batch, tf32=False, fused_head=True):
        from fcnet.engines import cuda

        self.model, self.x, self.y = model, x, y
        self.name = ("fcnet cuda tf32" if tf32 else "fcnet cuda") + ("" if fused_head else " gemm head")
        os.environ["CUPY_TF32"] = "1" if tf32 else "0"  # read when the engine's cuBLAS handle is made
        head_max, cuda.HEAD_MAX = cuda.HEAD_MAX, cuda.HEAD_MAX if fused_head else 0
        try:
            self.engine = make_engine(model, x, y, batch, "cuda")
        finally:
            cuda.HEAD_MAX = head_max

    def epoch(self, order):
        return train_epoch(self.engine, self.x, self.y, order)["loss"]


class Torch:
    def __init__(self, model, x, y, batch, graph, eager_steps):
        import torch

        self.torch, self.batch, self.graph, self.eager_steps = torch, batch, graph, eager_steps
        self.name = "torch graph" if graph else "torch eager"
        dev = torch.device("cuda")
        self.x, self.y = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.int64)).to(dev)
        self.params = [torch.tensor(p, device=dev, requires_grad=True) for p in model.parameters]
        self.lr = model.optimizer.learning_rate
        if graph:
            self.idx = torch.zeros(batch, dtype=torch.int64, device=dev)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks
                    self._step(self.idx)
            torch.cuda.current_stream().wait_stream(side)
            self.g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.g):
                self.loss = self._step(self.idx)

    def _step(self, idx):
        torch = self.torch
        xb = self.x[idx].float() / 255
        h = torch.relu(xb @ self.params[0] + self.params[1])
        for w, b in zip(self.params[2:-2:2], self.params[3:-2:2]):
            h = torch.relu(h @ w + b)
        loss = torch.nn.functional.cross_entropy(h @ self.params[-2] + self.params[-1], self.y[idx])
        grads = torch.autograd.grad(loss, self.params)
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                p.sub_(self.lr * g)
        return loss.detach()

    def epoch(self, order):
        torch, b = self.torch, self.batch
        perm = torch.from_numpy(order).cuda()
        steps = len(order) // b
        if self.graph:
            for i in range(steps):
                self.idx.copy_(perm[i * b:(i + 1) * b])
                self.g.replay()
            return float(self.loss)
        timed = min(steps, self.eager_steps)
        for i in range(timed):
            loss = self._step(perm[i * b:(i + 1) * b])
        return float(loss)

    def scale(self, n):
        return 1.0 if self.graph else (n // self.batch) / min(n // self.batch, self.eager_steps)


class Jax:
    """``tf32``: JAX's default precision for float32 matrix products on the GPU; else ``Precision.HIGHEST``."""

    def __init__(self, model, x, y, batch, tf32):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp, self.batch = jax, jnp, batch
        self.name = "jax scan tf32" if tf32 else "jax scan fp32"
        precision = None if tf32 else jax.lax.Precision.HIGHEST
        self.x, self.y = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
        self.params = [jnp.asarray(p) for p in model.parameters]
        lr = model.optimizer.learning_rate

        def loss_fn(params, idx):
            h = self.x[idx].astype(jnp.float32) / 255
            for w, b in zip(params[:-2:2], params[1:-2:2]):
                h = jax.nn.relu(jnp.matmul(h, w, precision=precision) + b)
            logits = jnp.matmul(h, params[-2], precision=precision) + params[-1]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), self.y[idx][:, None], axis=1))

        def step(params, idx):
            loss, grads = jax.value_and_grad(loss_fn)(params, idx)
            return [p - lr * g for p, g in zip(params, grads)], loss

        self.run = jax.jit(lambda params, batches: jax.lax.scan(step, params, batches), donate_argnums=0)

    def epoch(self, order):
        steps = len(order) // self.batch
        batches = self.jnp.asarray(order[:steps * self.batch].reshape(steps, self.batch))
        self.params, losses = self.run(self.params, batches)
        return float(losses[-1])


def race(contenders, n, rounds, seed=0):
    """Warm-up epoch each, then ``rounds`` rounds in rotating order; seconds per epoch per contender, per round."""
    rng = np.random.default_rng(seed)
    times = {c.name: [] for c in contenders}
    for r in range(rounds + 1):
        order = rng.permutation(n)
        for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            synchronize()
            start = time.perf_counter()
            c.epoch(order)
            synchronize()
            if r:
                times[c.name].append((time.perf_counter() - start) * getattr(c, "scale", lambda n: 1.0)(n))
    return times


def summarize(times, base="fcnet cuda"):
    """Per contender: median and min seconds per epoch, and the median per-round ratio to ``base``."""
    rows = {}
    for name, t in times.items():
        ratios = [a / b for a, b in zip(t, times[base])]
        rows[name] = {"median_s": statistics.median(t), "min_s": min(t), "ratio_to_fcnet": statistics.median(ratios)}
    return rows


def device_busy(run, steps, table_path=None):
    """Through PyTorch's profiler (CUPTI): the fraction of ``run``'s wall time the GPU spent in kernels, and
    the kernels launched per step; the profiler's table of kernels goes to ``table_path``."""
    try:
        from torch.profiler import ProfilerActivity, profile

        synchronize()
        with profile(activities=[ProfilerActivity.CUDA], acc_events=True) as prof:
            start = time.perf_counter()  # inside: the profiler's own start and its processing at exit stay out
            run()
            synchronize()
            wall = time.perf_counter() - start
        averages = prof.key_averages()
        device = [e for e in averages if (getattr(e, "self_device_time_total", 0) or 0) > 0]
        busy = sum(e.self_device_time_total for e in device) / 1e6
        kernels = sum(e.count for e in device if not e.key.startswith("Memcpy") and not e.key.startswith("Memset"))
        if table_path:
            try:
                text = averages.table(sort_by="self_device_time_total", row_limit=30)
            except Exception:  # an older profiler's name for the column
                text = averages.table(sort_by="self_cuda_time_total", row_limit=30)
            Path(table_path).write_text(text)
        return f"{busy / wall:.2f} of the wall time in {kernels / steps:.1f} kernels per step"
    except Exception as exc:  # a profiler that cannot attach: say so in the table instead
        return f"n/a ({type(exc).__name__}: {exc})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the four MNIST IDX files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="8,64,256")
    parser.add_argument("--eager-steps", type=int, default=1500)
    parser.add_argument("--ciresan-epochs", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args()
    from fcnet.engines import cuda

    if cuda.unavailable():
        parser.exit(1, f"gpu.py: {cuda.unavailable()}\n")
    try:
        import torch
    except ImportError:
        parser.exit(1, "gpu.py: PyTorch (with CUDA) is needed for the race: pip install torch\n")
    import cupy

    (x, y), (x_test, y_test) = fcnet.datasets.load("mnist", args.data)
    x, x_test = x.reshape(len(x), -1), x_test.reshape(len(x_test), -1)
    y, y_test = y.astype(np.intp), y_test.astype(np.intp)
    report = {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "seed": {}, "ciresan": {}}
    print(f"# {report['device']}; CuPy {cupy.__version__}, PyTorch {torch.__version__}", flush=True)

    for batch in map(int, args.batch_sizes.split(",")):
        contenders = [Fcnet(seed_model(), x, y, batch), Torch(seed_model(), x, y, batch, False, args.eager_steps),
                      Torch(seed_model(), x, y, batch, True, args.eager_steps), Fcnet(seed_model(), x, y, batch, True),
                      Fcnet(seed_model(), x, y, batch, fused_head=False)]
        try:
            contenders += [Jax(seed_model(), x, y, batch, tf32) for tf32 in (False, True)]
        except ImportError:
            pass
        rows = summarize(race(contenders, len(x), args.rounds))
        order = np.random.default_rng(9).permutation(len(x))
        table = args.out and Path(args.out).with_name(f"profile_{batch}.txt")
        rows["fcnet cuda"]["device_busy"] = device_busy(lambda c=contenders[0], o=order: c.epoch(o),
                                                        -(-len(x) // batch), table)
        rows["fcnet cuda"]["graphs"] = contenders[0].engine.graphs
        report["seed"][batch] = rows
        for name, row in rows.items():
            print(f"seed batch {batch:4d}  {name:20s} {row['median_s']:.4f} s/epoch  ×{row['ratio_to_fcnet']:.2f}"
                  + (f"  busy {row['device_busy']}, graphs {row['graphs']}" if "graphs" in row else ""), flush=True)

    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        contenders = [Fcnet(seed_model(CIRESAN), x, y, 128, tf32), Torch(seed_model(CIRESAN), x, y, 128, True, 0)]
        rows = summarize(race(contenders, len(x), args.rounds), contenders[0].name)
        report["ciresan"]["tf32" if tf32 else "float32"] = rows
        for name, row in rows.items():
            print(f"ciresan {'tf32' if tf32 else 'fp32'}  {name:12s} {row['median_s']:.4f} s/epoch  "
                  f"×{row['ratio_to_fcnet']:.2f}", flush=True)

    if args.ciresan_epochs:  # plain training, no deformations: how far the network gets without them
        os.environ["CUPY_TF32"] = "1"
        model = seed_model(CIRESAN, fcnet.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
        start = time.perf_counter()
        history = model.fit(x, y, epochs=args.ciresan_epochs, batch_size=128, verbose=0, engine="cuda",
                            callbacks=[fcnet.callbacks.LearningRateDecay(0.93)])
        seconds = time.perf_counter() - start
        test = model.evaluate(x_test, y_test, engine="cuda")
        report["ciresan"]["training"] = {"epochs": args.ciresan_epochs, "seconds": seconds,
                                         "test_accuracy": test.accuracy, "train_loss": history.history["loss"][-1]}
        print(f"ciresan nesterov tf32, {args.ciresan_epochs} epochs without deformations: {seconds:.1f} s, "
              f"test accuracy {test.accuracy:.4f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
