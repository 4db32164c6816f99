import http.server
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fcnet
from fcnet.datasets import FILES
from fcnet.idx import write_idx
from fcnet.optimizers import SGD, Adam, AdamW, RMSprop

# One BLAS thread for the runs of the suite (and the commands it starts), unless a test sets another: OpenBLAS's
# threads spin while they wait, and on a 2-core machine shared by pytest and its subprocesses a second one costs
# CPU time without saving wall time. The runs that compare results give their thread count explicitly, and
# tests/test_threads.py, which tests the choice itself, clears this.
os.environ.setdefault("FCNET_THREADS", "1")

# Each registered optimizer, and the variants of its rule the engines write apart (momentum, Nesterov, epsilon forms):
# tests/engines/test_parity.py checks that every registered name has one.
OPTIMIZERS = {
    "sgd": lambda: SGD(0.1),
    "sgd-momentum": lambda: SGD(0.05, momentum=0.9),
    "sgd-nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: Adam(0.01),
    "adam-torch": lambda: Adam(0.01, epsilon_form="torch"),
    "adamw": lambda: AdamW(0.01),
    "rmsprop": lambda: RMSprop(0.01),
    "rmsprop-torch": lambda: RMSprop(0.01, epsilon_form="torch"),
}
# How close a compiled engine stays to NumPy, relative to the largest entry: OpenBLAS in both on the CPU; cuBLAS sums
# in another order on the GPU.
TOLERANCE = {("numba", "float64"): 1e-12, ("numba", "float32"): 2e-5, ("cuda", "float64"): 1e-10,
             ("cuda", "float32"): 1e-4}


FCNET = [sys.executable, "-m", "fcnet"]


def run(*args, env=None):
    """``fcnet ARGS`` in a subprocess, as a user's shell runs it (``env`` added to this one's)."""
    return subprocess.run([*FCNET, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def write_npz(path, arrays, config=None):
    """A model-like ``.npz`` written by hand (``config`` as the JSON string fcnet stores), for crafted files."""
    if config is not None:
        arrays = {**arrays, "config": np.array(json.dumps(config))}
    np.savez(path, **arrays)
    return path


def synthetic_images(n, rng, n_classes=10, side=28):
    """Learnable uint8 images: each class lights up its own horizontal band, plus noise."""
    y = rng.integers(0, n_classes, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
    band = side // n_classes
    for c in range(n_classes):
        x[y == c, c * band:(c + 1) * band, :] += 180
    return x, y


def tiny_data(n=120, seed=0):
    """``n`` rows of 12 ``uint8`` inputs and labels of 3 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 12), dtype=np.uint8), rng.integers(0, 3, n)


def tiny_net(seed=0, optimizer="sgd"):
    """A compiled 12-8-3 ReLU/softmax network for :func:`tiny_data`."""
    model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=12), fcnet.Dense(3, "softmax")], seed=seed)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def write_idx_set(folder, n_train=600, n_test=200, seed=0, suffix=".gz"):
    """Write the four standard IDX files of a synthetic set into ``folder``; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [*synthetic_images(n_train, rng), *synthetic_images(n_test, rng)]
    for stem, array in zip(FILES, arrays):
        write_idx(folder / (stem + suffix), array)
    return arrays


class Mirror:
    """A loopback HTTP server.

    ``routes`` maps a path to the bytes to serve, to ``("truncate", bytes)`` (half the body, then hang up),
    ``("trickle", bytes)`` (one byte every 50 ms), ``("huge", bytes)`` (a Content-Length of 1 TB, then the
    bytes), or to ``"html"``, ``"drop"`` (hang up without an answer) or ``"404"``.
    """

    def __init__(self):
        self.routes, self.hits = {}, []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.hits.append(self.path)
                body = mirror.routes.get(self.path, "404")
                if body == "404":
                    self.send_error(404)
                    return
                if body == "drop":  # hang up without an answer
                    self.close_connection = True
                    return
                if body == "html":
                    body = b"<html><body>Access denied</body></html>"
                mode, body = body if isinstance(body, tuple) else ("whole", body)
                self.send_response(200)
                self.send_header("Content-Length", str(10**12 if mode == "huge" else len(body)))
                self.end_headers()
                if mode == "trickle":
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic IDX set (600 training, 200 test images) shared by a module's tests."""
    folder = tmp_path_factory.mktemp("data")
    write_idx_set(folder, n_train=600, n_test=200)
    return folder


@pytest.fixture
def idx_dir(tmp_path):
    folder = tmp_path / "idxset"
    write_idx_set(folder)
    return folder


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST set (installed by `make setup`)."""
    return fcnet.datasets.load("fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep every test away from the user's real cache and data folders."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FCNET_DATA", raising=False)


def follow_torch(model, params, reference, rng, steps=25, before_step=None, scheduler=None):
    """``steps`` training steps of ``model`` (its own optimizer) beside ``reference`` (a torch optimizer of the
    tensors ``params``) on the same random batches of 6 × 5 inputs and 3 classes; ``before_step(params)`` may edit
    torch's gradients (clipping), ``scheduler`` is stepped after each torch step."""
    from fcnet.torchcheck import torch_loss

    for _ in range(steps):
        x, y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
        _, grads = model.loss_and_gradients(x, y)
        model.optimizer.apply_gradients(zip(grads, model.parameters))
        reference.zero_grad()
        torch_loss(model, params, x, y).backward()
        if before_step is not None:
            before_step(params)
        reference.step()
        if scheduler is not None:
            scheduler.step()


def pytest_collection_modifyitems(items):
    """GPU, browser and end-to-end tests are slow too: ``pytest -m "not slow"`` leaves them all out."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("gpu", "browser", "e2e")):
            item.add_marker(pytest.mark.slow)
