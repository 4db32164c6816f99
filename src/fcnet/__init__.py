"""fcnet: fully-connected networks with hand-written backpropagation in NumPy.

>>> import fcnet
>>> model = fcnet.Sequential([fcnet.Dense(300, activation="relu", input_dim=784),
...                           fcnet.Dense(10, activation="softmax")], seed=0)
>>> model.compile(optimizer=fcnet.SGD(lr=0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

A whole run, exactly as ``fcnet train`` does it::

    result = fcnet.train_run(fcnet.TrainConfig(dataset="fashion-mnist", hidden=(256, 128), optimizer="adam",
                                               lr=1e-3), out="runs/adam")
"""

from . import activations, callbacks, datasets, initializers, losses, optimizers, regularizers
from .callbacks import Callback, History, LearningRateDecay
from .config import TrainConfig
from .errors import ChecksumError, DataError, DataNotFoundError, DivergenceError, FcnetError
from .layers import BatchNormalization, Dense, Dropout
from .model import Evaluation, Sequential
from .optimizers import SGD, Adam, RMSprop
from .run import RunResult, train_run
from .saving import load_model
from .tracing import Trace, trace

__version__ = "0.1.0"

# Modules that need more than NumPy (matplotlib, scikit-learn, torch, onnx) or are rarely used load on first use:
# ``fcnet.plots.learning_curves(...)`` works as ``from fcnet import plots`` does, and ``import fcnet`` stays light.
_ON_FIRST_USE = ("compare", "export", "gradcheck", "images", "plots", "report", "runstore", "serve", "sklearn", "sweep",
                 "torchcheck")


def __getattr__(name):
    if name in _ON_FIRST_USE:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fcnet' has no attribute {name!r}")

__all__ = [
    "Sequential", "Dense", "Dropout", "BatchNormalization", "SGD", "Adam", "RMSprop", "load_model", "History",
    "Callback", "LearningRateDecay",
    "Evaluation", "TrainConfig", "train_run", "RunResult", "trace", "Trace",
    "FcnetError", "DataError", "DataNotFoundError", "ChecksumError", "DivergenceError",
    "activations", "callbacks", "datasets", "initializers", "losses", "optimizers", "regularizers",
]
