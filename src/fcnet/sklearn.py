"""scikit-learn estimators on fcnet's training loop: ``MLPClassifier`` and ``MLPRegressor`` with scikit-learn's API.

``from fcnet.sklearn import MLPClassifier`` (``pip install 'fcnet[sklearn]'``) gives an estimator that works where
scikit-learn's does — ``Pipeline``, ``GridSearchCV``, ``cross_val_score``, ``clone``, ``pickle`` — and passes
scikit-learn's own estimator checks (``tests/test_sklearn.py``). The parameters are scikit-learn's, with its
defaults, except:

- ``alpha`` (the L2 penalty, ``alpha / (2 · batch) · Σ‖W‖²`` as in scikit-learn, :mod:`fcnet.regularizers`)
  defaults to 0, not scikit-learn's 1e-4 (the results in the README were measured so; pass ``alpha=1e-4`` for
  scikit-learn's);
- ``solver`` is ``"adam"`` or ``"sgd"`` (no L-BFGS); the SGD learning rate is constant;
- fcnet's own: ``dropout`` (the rate of a :class:`~fcnet.layers.Dropout` after every hidden layer, active in
  ``fit`` only), ``batch_norm`` (a :class:`~fcnet.layers.BatchNormalization` after every hidden layer, before its
  dropout; trains on the NumPy engine), ``dtype`` (``"float64"``, as scikit-learn computes, or ``"float32"``) and
  ``engine`` (:func:`fcnet.engines.choose_engine`).

Training stops as scikit-learn's does: after ``n_iter_no_change`` epochs in which the training loss (or, with
``early_stopping``, the validation score) did not improve by ``tol``, with a ``ConvergenceWarning`` when
``max_iter`` epochs end first.
"""

import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .builder import build_model
from .callbacks import Callback
from .optimizers import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}  # scikit-learn's names


class _Stopping(Callback):
    """scikit-learn's stopping rule and records, one epoch at a time."""

    def __init__(self, estimator, validation):
        self.estimator, self.validation = estimator, validation

    def on_epoch_end(self, epoch, logs):
        est = self.estimator
        loss = logs["loss"]
        if not math.isfinite(loss):
            return
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        est.t_ += est._rows
        est.loss_ = loss
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.validation is not None:
            score = est._score_raw(*self.validation)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score > est.best_validation_score_:
                est._best_weights = est.model_.get_weights()
            improved = score > est.best_validation_score_ + est.tol
            est.best_validation_score_ = max(est.best_validation_score_, score)
        else:
            improved = loss < est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, loss)
        est._no_improvement = 0 if improved else est._no_improvement + 1
        if est._no_improvement > est.n_iter_no_change:
            est._converged = True
            self.model.stop_training = True


class _MLP(BaseEstimator):
    """What both estimators share: the parameters, building the network, the training loop."""

    _output = None  # the output activation

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0, batch_size="auto",
                 learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 dropout=0.0, batch_norm=False, dtype="float64", engine="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.dtype = dtype
        self.engine = engine

    # -- checks and the network ------------------------------------------------------------------------------

    def _check_params(self):
        hidden = np.atleast_1d(self.hidden_layer_sizes)
        if hidden.ndim != 1 or hidden.dtype.kind not in "iu" or (hidden < 1).any():
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd' (fcnet has no L-BFGS), got {self.solver!r}")
        for name, low in (("alpha", 0), ("tol", 0), ("learning_rate_init", None), ("epsilon", None)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if low == 0
                                                                                  else value > 0)):
                raise ValueError(f"{name} must be a finite number {'≥ 0' if low == 0 else '> 0'}, got {value!r}")
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size != "auto" and (isinstance(self.batch_size, bool) or not isinstance(
                self.batch_size, (int, np.integer)) or self.batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {self.batch_size!r}")
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise ValueError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        for name in ("momentum", "beta_1", "beta_2", "validation_fraction", "dropout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        return [int(h) for h in hidden]

    def _build(self, n_features, n_outputs, batch):
        hidden = self._check_params()
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        model = build_model(hidden, ACTIVATIONS[self.activation], n_features, n_outputs, seed, self.dtype,
                            output=self._output, l2=self.alpha / (2 * batch),  # scikit-learn's alpha / (2 n_batch) Σ W²
                            dropout=self.dropout, batch_norm=bool(self.batch_norm))
        if self.solver == "adam":
            optimizer = Adam(self.learning_rate_init, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        else:
            optimizer = SGD(self.learning_rate_init, momentum=self.momentum,
                            nesterov=self.nesterovs_momentum and self.momentum > 0)
        model.compile(optimizer, self._loss, metrics=["accuracy"] if self._output == "softmax" else None)
        return model

    # -- training ---------------------------------------------------------------------------------------------

    def _fit(self, X, y, incremental, classes=None):
        fresh = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = validate_data(self, X, y, reset=fresh, dtype=(np.float64, np.float32),
                             multi_output=self._output != "softmax")
        if fresh:
            self._set_outputs(y, classes)
        targets = self._targets(y)
        n = len(X)
        batch = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        if fresh:
            self.model_ = self._build(X.shape[1], self._n_outputs, batch)
            self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
            self.best_loss_, self._no_improvement = np.inf, 0
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        validation = None
        if self.early_stopping and not incremental:
            stratify = targets if self._output == "softmax" else None
            X, X_val, targets, t_val = train_test_split(X, targets, test_size=self.validation_fraction,
                                                        random_state=self.random_state, stratify=stratify)
            validation = (X_val, t_val)
        self._rows, self._converged, self._best_weights = len(X), False, None
        self.model_.fit(X, targets, epochs=1 if incremental else self.max_iter, batch_size=batch,
                        shuffle=self.shuffle, verbose=0, engine=self.engine, callbacks=[_Stopping(self, validation)])
        if self._best_weights is not None:  # early stopping keeps the best epoch's weights, as scikit-learn does
            self.model_.set_weights(self._best_weights)
        self._best_weights = None
        if not incremental and not self._converged:
            warnings.warn(f"fcnet: the optimizer did not converge in {self.max_iter} iterations (max_iter)",
                          ConvergenceWarning, stacklevel=3)
        return self

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and ``y``; returns ``self``."""
        return self._fit(X, y, incremental=False)

    def _forward(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.predict(X.astype(self.model_.dtype, copy=False)).astype(np.float64)


class MLPClassifier(ClassifierMixin, _MLP):
    """A multi-layer perceptron classifier: ReLU (or other) hidden layers, a softmax output, cross-entropy.

    Parameters and attributes are scikit-learn's ``MLPClassifier``'s (see the module docstring for the
    differences); ``model_`` is the trained :class:`fcnet.Sequential`, which saves like any fcnet model.
    """

    _output = "softmax"
    _loss = "sparse_categorical_crossentropy"

    def _set_outputs(self, y, classes):
        check_classification_targets(y)
        self.classes_ = np.unique(y if classes is None else classes)
        if len(self.classes_) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got 1 class ({self.classes_[0]})")
        self._n_outputs = len(self.classes_)

    def _targets(self, y):
        check_classification_targets(y)
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels that are not among classes_: {unknown[:5].tolist()}")
        return np.searchsorted(self.classes_, y)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X, y``; the first call needs ``classes`` (every label there will be)."""
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("the first call to partial_fit needs classes")
        if hasattr(self, "model_") and classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes).tolist()} differ from the first call's "
                             f"{self.classes_.tolist()}")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._forward(X)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample, as labels of ``classes_``."""
        best = self.predict_proba(X).argmax(axis=1)  # first: it checks that the estimator is fitted
        return self.classes_[best]

    def _score_raw(self, X, targets):
        return accuracy_score(targets, self.model_.predict(X).argmax(axis=1))


class MLPRegressor(MultiOutputMixin, RegressorMixin, _MLP):
    """A multi-layer perceptron regressor: hidden layers, a linear output, squared error; one or more outputs.

    Parameters and attributes are scikit-learn's ``MLPRegressor``'s (see the module docstring for the
    differences); ``model_`` is the trained :class:`fcnet.Sequential`.
    """

    _output = "linear"
    _loss = "mse"

    def _set_outputs(self, y, classes):
        self._n_outputs = 1 if y.ndim == 1 else y.shape[1]
        self._one_output = y.ndim == 1

    def _targets(self, y):
        y = np.asarray(y, dtype=np.float64)
        if (1 if y.ndim == 1 else y.shape[1]) != self._n_outputs:
            raise ValueError(f"y has {1 if y.ndim == 1 else y.shape[1]} outputs, the model {self._n_outputs}")
        return y.reshape(len(y), -1)

    def partial_fit(self, X, y):
        """One epoch over ``X, y``, continuing the model (building it on the first call)."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """The predicted targets, shape (n_samples,) or (n_samples, n_outputs) as ``y`` was at ``fit``."""
        out = self._forward(X)
        return out.ravel() if self._one_output else out

    def _score_raw(self, X, targets):
        return r2_score(targets, self.model_.predict(X))
