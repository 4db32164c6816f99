"""The networks fcnet builds from settings — what ``fcnet train`` and every run train, what the scikit-learn
estimators fit and what ``fcnet gradcheck`` checks: hidden :class:`~fcnet.layers.Dense` layers, then an output
layer, as a :class:`~fcnet.model.Sequential`."""

from .layers import Dense
from .model import Sequential
from .regularizers import L2

__all__ = ["build_model"]


def build_model(hidden, activation, n_in, n_out, seed, dtype, output="softmax", l2=0.0, dropout=0.0,
                batch_norm=False, input_dropout=0.0):
    """The network ``fcnet train`` trains: hidden ``Dense`` layers of ``activation``, then an ``output`` layer
    (a softmax over the classes, or ``linear`` for regression); with ``l2``, an L2 penalty on every kernel; with
    ``batch_norm``, a BatchNormalization after every hidden layer, and with ``dropout``, a Dropout of that rate
    after it; with ``input_dropout``, a Dropout of the inputs (before the first layer)."""
    widths = [*hidden, n_out]
    acts = [activation] * len(hidden) + [output]
    layers = [Dense(w, activation=a, input_dim=n_in if i == 0 else None, kernel_regularizer=L2(l2) if l2 else None,
                    dropout=dropout if i > 0 else input_dropout, batch_norm=batch_norm and i < len(hidden))
              for i, (w, a) in enumerate(zip(widths, acts))]
    return Sequential(layers, seed=seed, dtype=dtype)
