"""The same network trained in fcnet and in other frameworks, side by side (``fcnet compare``, benchmarks).

Every contender starts from the fcnet model's initial weights and visits the
data in the same order (one permutation per epoch, shared), with the same
batch size and learning rate, so their losses and accuracies can be compared
epoch by epoch and their times are for the same work: gather a batch of
``uint8`` images by index, scale it to [0, 1], forward, backward, update.
Frameworks are optional and imported here only: a missing one is reported as
"not installed".
"""

import functools
import time

import numpy as np

from .engines import make_engine
from .training import train_epoch

__all__ = ["FcnetRunner", "TorchRunner", "TorchCompileRunner", "KerasRunner", "JaxRunner", "JaxEigenRunner", "RUNNERS",
           "make_runner", "NotInstalled", "Unmirrored", "race", "MIRRORED"]

# The TrainConfig fields every contender mirrors; any other set away from its default is refused by race.
MIRRORED = ("dataset", "data_dir", "limit", "hidden", "activation", "optimizer", "lr", "momentum", "batch_size",
            "epochs", "dtype", "seed", "engine", "threads", "preparation")


class NotInstalled(Exception):
    """The framework cannot be imported."""


class Unmirrored(ValueError):
    """A setting the other frameworks do not mirror (a usage error of ``fcnet compare``)."""


class FcnetRunner:
    """fcnet itself, through its ordinary training loop; ``engine`` as in :func:`fcnet.engines.choose_engine`,
    chosen and built at the first epoch (it needs the targets) and kept, as ``fit`` does."""

    name = "fcnet"

    def __init__(self, model, batch_size, engine="auto"):
        self.model, self.batch_size, self.engine = model, batch_size, engine

    def train_epoch(self, x, y, order):
        """Train one epoch over ``x[order]``; returns (seconds, mean batch loss)."""
        if isinstance(self.engine, str):
            self.engine = make_engine(self.model, x, y, self.batch_size, self.engine)
        logs = train_epoch(self.engine, x, y, order)
        return logs["epoch_seconds"], logs["loss"]

    def evaluate(self, x, y):
        ev = self.model.evaluate(x, y)
        return ev.loss, ev.accuracy

    def predict(self, x):
        return self.model.predict(x)


def _torch_activation(torch, name):
    return {"relu": torch.nn.ReLU(), "sigmoid": torch.nn.Sigmoid(), "tanh": torch.nn.Tanh(),
            "leaky_relu": torch.nn.LeakyReLU(0.2), "linear": torch.nn.Identity()}[name]


class TorchRunner:
    """PyTorch eager: ``torch.nn.Linear`` layers, ``CrossEntropyLoss`` on logits, the matching ``torch.optim``."""

    name = "torch"

    def __init__(self, model, batch_size):
        try:
            import torch
        except ImportError:
            raise NotInstalled("torch") from None
        from .torchcheck import torch_optimizer

        self.torch, self.batch_size = torch, batch_size
        dtype = torch.float32 if model.dtype == np.float32 else torch.float64
        modules = []
        for i, layer in enumerate(model.layers):
            linear = torch.nn.Linear(layer.input_dim, layer.units, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.params["b"].copy()))
            modules.append(linear)
            if i < len(model.layers) - 1:
                modules.append(_torch_activation(torch, layer.activation.name))
        self.net = torch.nn.Sequential(*modules)  # the output softmax lives in CrossEntropyLoss
        self.dtype = dtype
        self.loss = torch.nn.CrossEntropyLoss()
        clipping = [k for k in model.optimizer.options if k != "weight_decay"]
        if clipping:
            raise ValueError(f"the torch contender has no {clipping[0]} (torch clips outside its optimizers)")
        self.optimizer = torch_optimizer(model.optimizer, list(self.net.parameters()))
        self._data = None

    def _tensors(self, x, y):
        if self._data is None or self._data[0] is not x:
            t = self.torch
            self._data = (x, t.from_numpy(x.reshape(len(x), -1)), t.from_numpy(y.astype(np.int64)))
        return self._data[1], self._data[2]

    def train_epoch(self, x, y, order):
        t = self.torch
        xt, yt = self._tensors(x, y)
        order_t = t.from_numpy(order)
        total = 0.0
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            idx = order_t[i:i + self.batch_size]
            xb = xt[idx].to(self.dtype).div_(255)
            self.optimizer.zero_grad()
            loss = self.loss(self.net(xb), yt[idx])
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(idx)
        return time.perf_counter() - start, total / len(order)

    def predict(self, x):
        t = self.torch
        with t.no_grad():
            xt = t.from_numpy(x.reshape(len(x), -1)).to(self.dtype).div_(255)
            return t.softmax(self.net(xt), dim=1).numpy()

    def evaluate(self, x, y):
        t = self.torch
        with t.no_grad():
            xt = t.from_numpy(x.reshape(len(x), -1)).to(self.dtype).div_(255)
            logits = self.net(xt)
            loss = t.nn.functional.cross_entropy(logits, t.from_numpy(y.astype(np.int64))).item()
            return loss, float((logits.argmax(1).numpy() == y).mean())


class KerasRunner:
    """Keras 3 on the TensorFlow backend: ``Rescaling(1/255)`` then ``Dense`` layers, the matching optimizer."""

    name = "keras"

    def __init__(self, model, batch_size):
        import os

        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import keras
        except ImportError:
            raise NotInstalled("keras") from None
        self.keras, self.batch_size = keras, batch_size
        layers = [keras.Input((model.input_dim,)), keras.layers.Rescaling(1 / 255)]
        for layer in model.layers:
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation.name))
        self.net = keras.Sequential(layers)
        self.net.set_weights([w for layer in model.layers for w in (layer.params["W"], layer.params["b"])])
        c, options = model.optimizer.get_config(), model.optimizer.options  # Keras' own weight decay and clipping
        optimizer = {"sgd": lambda: keras.optimizers.SGD(c["learning_rate"], momentum=c["momentum"],
                                                         nesterov=c["nesterov"], **options),
                     "adam": lambda: keras.optimizers.Adam(c["learning_rate"], c["beta_1"], c["beta_2"], c["epsilon"],
                                                           **options),
                     "adamw": lambda: keras.optimizers.AdamW(c["learning_rate"], beta_1=c["beta_1"],
                                                             beta_2=c["beta_2"], epsilon=c["epsilon"], **options),
                     "rmsprop": lambda: keras.optimizers.RMSprop(c["learning_rate"], c["rho"],
                                                                 epsilon=c["epsilon"], **options)}[c["name"]]()
        if c.get("epsilon_form", "keras") != "keras":
            raise ValueError(f"Keras has no {c['name']} with epsilon_form={c['epsilon_form']!r}")
        self.net.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def train_epoch(self, x, y, order):
        xs, ys = x.reshape(len(x), -1)[order], y[order]  # Keras' own loop slices batches in order
        start = time.perf_counter()
        history = self.net.fit(xs, ys, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - start, history.history["loss"][0]

    def predict(self, x):
        return self.net.predict(x.reshape(len(x), -1), batch_size=4096, verbose=0)

    def evaluate(self, x, y):
        loss, accuracy = self.net.evaluate(x.reshape(len(x), -1), y, batch_size=4096, verbose=0)
        return loss, accuracy


def _functional_optimizer(model, contender):
    """The config of ``model``'s optimizer when a functional contender (:func:`_update`) mirrors it."""
    c = model.optimizer.get_config()
    if c["name"] not in ("sgd", "adam") or c.get("epsilon_form", "keras") != "keras" or model.optimizer.options:
        raise ValueError(f"the {contender} contender has no {c['name']} with {model.optimizer.options or c} (it "
                         "mirrors plain sgd and adam)")
    return c


def _update(c, sqrt, params, state, grads):
    """One step of SGD (plain, momentum, Nesterov) or Adam with fcnet's (Keras') formulas, written functionally
    for JAX and ``torch.compile``: ``state`` is ``(slots, t)`` — the velocities, or Adam's m then v, and the step
    count — and ``sqrt`` the framework's. Returns ``(params, state)``."""
    slots, t = state
    t = t + 1
    lr = c["learning_rate"]
    if c["name"] == "adam":
        b1, b2, eps = c["beta_1"], c["beta_2"], c["epsilon"]
        n = len(params)
        m = [b1 * mi + (1 - b1) * g for mi, g in zip(slots[:n], grads)]
        v = [b2 * vi + (1 - b2) * g * g for vi, g in zip(slots[n:], grads)]
        step = lr * sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return [p - step * mi / (sqrt(vi) + eps) for p, mi, vi in zip(params, m, v)], (m + v, t)
    mu = c["momentum"]
    if not mu:
        return [p - lr * g for p, g in zip(params, grads)], (slots, t)
    vel = [mu * vi - lr * g for vi, g in zip(slots, grads)]
    if c["nesterov"]:
        return [p + mu * vi - lr * g for p, vi, g in zip(params, vel, grads)], (vel, t)
    return [p + vi for p, vi in zip(params, vel)], (vel, t)


def _logits(hidden, params, xb):
    """The network's logits, written functionally for JAX and ``torch.compile``: ``hidden`` the hidden layers'
    activation functions, ``params`` ``[W1, b1, W2, b2, ...]`` with ``W`` of shape (in, out)."""
    for i, f in enumerate(hidden):
        xb = f(xb @ params[2 * i] + params[2 * i + 1])
    return xb @ params[-2] + params[-1]


def _slot_count(c):
    return 2 if c["name"] == "adam" else 1  # Adam's m and v, or the velocity


class JaxRunner:
    """JAX the fastest honest way: the whole epoch is one ``jax.jit`` of a ``lax.scan`` over the batches (the
    last, partial batch by a second compiled step), data resident as float32 in [0, 1], each batch gathered
    inside the step, parameters and optimizer state donated; SGD (plain, momentum, Nesterov) and Adam written
    with fcnet's (Keras') formulas (:func:`_update`), so the trajectories match. XLA's default CPU settings
    (its matmuls by XNNPACK/YNNPACK where it chooses); :class:`JaxEigenRunner` makes them with Eigen."""

    name = "jax"
    compiler_options = None

    def __init__(self, model, batch_size):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            raise NotInstalled("jax") from None
        c = _functional_optimizer(model, "JAX")
        self.jax, self.jnp, self.batch_size = jax, jnp, batch_size
        self.dtype = jnp.float32 if model.dtype == np.float32 else jnp.float64
        self.params = [jnp.asarray(p) for p in model.parameters]
        self.state = ([jnp.zeros_like(p) for _ in range(_slot_count(c)) for p in self.params], 0)  # distinct: donated
        acts = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "linear": lambda z: z,
                "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.2)}
        hidden = [acts[layer.activation.name] for layer in model.layers[:-1]]

        logits = functools.partial(_logits, hidden)

        def loss_fn(params, xb, yb):
            logp = jax.nn.log_softmax(logits(params, xb))
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

        def step(params, state, x, y, idx):
            loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
            params, state = _update(c, jnp.sqrt, params, state, grads)
            return params, state, loss

        def epoch(params, state, x, y, batches):
            def body(carry, idx):
                params, state, loss = step(*carry, x, y, idx)
                return (params, state), loss
            (params, state), losses = jax.lax.scan(body, (params, state), batches)
            return params, state, losses

        options = {"compiler_options": self.compiler_options} if self.compiler_options else {}
        self._epoch = jax.jit(epoch, donate_argnums=(0, 1), **options)
        self._logits = jax.jit(logits, **options)
        self._step = jax.jit(step, donate_argnums=(0, 1), **options)
        self._data = None

    def _arrays(self, x, y):
        if self._data is None or self._data[0] is not x:
            jnp = self.jnp
            self._data = (x, jnp.asarray(x.reshape(len(x), -1), dtype=self.dtype) / 255, jnp.asarray(y, jnp.int32))
        return self._data[1], self._data[2]

    def train_epoch(self, x, y, order):
        xj, yj = self._arrays(x, y)
        b = self.batch_size
        full = len(order) // b
        start = time.perf_counter()
        self.params, self.state, losses = self._epoch(self.params, self.state, xj, yj,
                                                      self.jnp.asarray(order[:full * b].reshape(full, b)))
        total = float(losses.sum()) * b
        if len(order) % b:
            self.params, self.state, loss = self._step(self.params, self.state, xj, yj,
                                                       self.jnp.asarray(order[full * b:]))
            total += float(loss) * (len(order) % b)
        self.jax.block_until_ready(self.params)
        return time.perf_counter() - start, total / len(order)

    def _logits_of(self, x):
        return self._logits(self.params, self.jnp.asarray(x.reshape(len(x), -1), dtype=self.dtype) / 255)

    def predict(self, x):
        return np.asarray(self.jax.nn.softmax(self._logits_of(x), axis=1))

    def evaluate(self, x, y):
        logits = self._logits_of(x)
        logp = np.asarray(self.jax.nn.log_softmax(logits, axis=1))
        return float(-logp[np.arange(len(y)), y].mean()), float((logp.argmax(1) == y).mean())


class JaxEigenRunner(JaxRunner):
    """:class:`JaxRunner` with XLA's matmuls made by Eigen instead of XNNPACK/YNNPACK — the faster setting at some
    shapes on this machine's CPU, so the benchmarks race both."""

    name = "jax-eigen"
    compiler_options = {"xla_cpu_use_xnnpack": False, "xla_cpu_experimental_ynn_fusion_type": ""}


class TorchCompileRunner:
    """PyTorch 2's compiler on a functional step: the gradients by ``torch.func.grad_and_value``, the update of
    :func:`_update`, the whole step ``torch.compile``-d (Inductor, fixed shapes: the partial last batch compiles
    once more), data resident as float32 in [0, 1], each batch gathered inside the step."""

    name = "torch-compile"

    def __init__(self, model, batch_size):
        try:
            import torch
        except ImportError:
            raise NotInstalled("torch") from None
        c = _functional_optimizer(model, "torch.compile")
        self.torch, self.batch_size = torch, batch_size
        self.dtype = torch.float32 if model.dtype == np.float32 else torch.float64
        self.params = [torch.from_numpy(p.copy()) for p in model.parameters]  # W as fcnet holds it, (in, out)
        self.state = ([torch.zeros_like(p) for _ in range(_slot_count(c)) for p in self.params],
                      torch.zeros((), dtype=torch.float64))  # a tensor: a Python int would recompile every step
        acts = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "linear": lambda z: z,
                "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.2)}
        hidden = [acts[layer.activation.name] for layer in model.layers[:-1]]

        logits = functools.partial(_logits, hidden)

        def step(params, state, x, y, idx):
            loss_fn = lambda params: torch.nn.functional.cross_entropy(logits(params, x[idx]), y[idx])  # noqa: E731
            grads, loss = torch.func.grad_and_value(loss_fn)(params)
            params, state = _update(c, torch.sqrt, params, state, grads)
            return params, state, loss

        self._logits = logits
        # Dynamo keeps the compiled variants of one code object (every runner's step) up to a limit: a benchmark's
        # rows (networks, optimizers, batch sizes) need more than the default 8, or the later ones run eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self._step = torch.compile(step, dynamic=False)
        self._data = None

    def _tensors(self, x, y):
        if self._data is None or self._data[0] is not x:
            t = self.torch
            self._data = (x, t.from_numpy(x.reshape(len(x), -1)).to(self.dtype) / 255,
                          t.from_numpy(y.astype(np.int64)))
        return self._data[1], self._data[2]

    def train_epoch(self, x, y, order):
        xt, yt = self._tensors(x, y)
        order_t = self.torch.from_numpy(order)
        losses = []
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            idx = order_t[i:i + self.batch_size]
            self.params, self.state, loss = self._step(self.params, self.state, xt, yt, idx)
            losses.append(loss * len(idx))
        total = float(self.torch.stack(losses).sum())
        return time.perf_counter() - start, total / len(order)

    def _logits_of(self, x):
        t = self.torch
        with t.no_grad():
            return self._logits(self.params, t.from_numpy(x.reshape(len(x), -1)).to(self.dtype) / 255)

    def predict(self, x):
        return self.torch.softmax(self._logits_of(x), dim=1).numpy()

    def evaluate(self, x, y):
        t = self.torch
        logits = self._logits_of(x)
        loss = t.nn.functional.cross_entropy(logits, t.from_numpy(y.astype(np.int64))).item()
        return loss, float((logits.argmax(1).numpy() == y).mean())


RUNNERS = {"fcnet": FcnetRunner, "torch": TorchRunner, "torch-compile": TorchCompileRunner, "keras": KerasRunner,
           "jax": JaxRunner, "jax-eigen": JaxEigenRunner}


def make_runner(name, model, batch_size):
    """A runner for framework ``name`` mirroring ``model`` (compiled, with its initial weights)."""
    return RUNNERS[name](model, batch_size)


def race(config, frameworks, say=print, warn=print):
    """``fcnet compare``: train ``config``'s network in fcnet and in each of ``frameworks`` from the same initial
    weights and data order, epochs in turns (who goes first alternates); ``say`` each epoch's line per contender and
    the median seconds per epoch after the first (which compiles: Numba, XLA, Inductor). A framework that is not
    installed is skipped with a ``warn``. Returns ``{name: [seconds per epoch]}``.

    Raises
    ------
    Unmirrored
        A setting of ``config`` that the other frameworks do not mirror (see :data:`MIRRORED`).
    """
    from .config import TrainConfig
    from .run import prepare

    default = TrainConfig()
    unmirrored = [name for name in TrainConfig.field_names()
                  if name not in MIRRORED and getattr(config, name) != getattr(default, name)]
    if unmirrored:
        flags = ", ".join("--" + name.replace("_", "-") for name in unmirrored)
        raise Unmirrored(f"{flags}: not mirrored by the other frameworks (fcnet compare trains the plain network: "
                         f"{', '.join(MIRRORED)})")
    (x_train, y_train), (x_test, y_test), model = prepare(config)
    x_train = x_train.reshape(len(x_train), -1)
    runners = [FcnetRunner(model, config.batch_size, config.engine)]
    for name in frameworks:  # built before any training: every runner starts from the same weights
        try:
            runners.append(make_runner(name, model, config.batch_size))
        except NotInstalled:
            warn(f"{name}: not installed (pip install 'fcnet[{name}]')")
    arch = "-".join(map(str, [model.input_dim, *config.hidden, model.output_dim]))
    say(f"{arch} {config.activation}/softmax, {config.optimizer} lr {config.lr}, batch {config.batch_size}, "
        f"{config.epochs} epochs, {len(x_train)} {config.dataset} training images, seed {config.seed}; same "
        "initial weights and data order for all")
    say(f"{'epoch':>5}  {'framework':<13} {'seconds':>8} {'loss':>8} {'train acc':>9} {'test acc':>8}")
    orders = np.random.default_rng(config.seed)
    seconds = {r.name: [] for r in runners}
    for epoch in range(config.epochs):
        order = orders.permutation(len(x_train))
        turn = runners[epoch % len(runners):] + runners[:epoch % len(runners)]  # alternate who goes first
        results = {r.name: r.train_epoch(x_train, y_train, order) for r in turn}
        for r in runners:
            secs, loss = results[r.name]
            seconds[r.name].append(secs)
            train_acc, test_acc = r.evaluate(x_train, y_train)[1], r.evaluate(x_test, y_test)[1]
            say(f"{epoch + 1:>5}  {r.name:<13} {secs:>8.3f} {loss:>8.4f} {train_acc:>9.4f} {test_acc:>8.4f}")
    timed = slice(1 if config.epochs > 1 else 0, None)  # the first epoch compiles (Numba, XLA, Inductor)
    which = "after the first" if config.epochs > 1 else "one epoch"
    mine = float(np.median(seconds["fcnet"][timed]))
    for r in runners[1:]:
        theirs = float(np.median(seconds[r.name][timed]))
        say(f"median seconds per epoch ({which}): fcnet {mine:.3f}, {r.name} {theirs:.3f}; fcnet / {r.name} = "
            f"{mine / theirs:.2f}")
    return seconds
