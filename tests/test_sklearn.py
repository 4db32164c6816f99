"""fcnet.sklearn: scikit-learn's own estimator checks, and the estimators in pipelines, searches and pickles."""

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install 'fcnet[sklearn]'")
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fcnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# The checks fit on a few dozen rows for a few epochs: not converging there is expected, as for scikit-learn's MLP.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.slow
@parametrize_with_checks([MLPClassifier(), MLPRegressor(), MLPClassifier(dropout=0.2, batch_norm=True)])
def test_scikit_learns_own_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def table():
    x, y = make_classification(600, 12, n_informative=8, n_classes=3, random_state=0)
    return x, np.array(["cat", "dog", "eel"])[y]


@pytest.mark.slow
def test_in_a_pipeline_a_parallel_grid_search_and_cross_validation(table):
    x, y = table
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__learning_rate_init": [1e-3, 1e-2]}, cv=3, n_jobs=2).fit(x, y)
    assert search.best_score_ > 0.75 and set(search.predict(x)) <= {"cat", "dog", "eel"}
    scores = cross_val_score(MLPRegressor(max_iter=80, random_state=0), *_regression(), cv=3)
    assert scores.mean() > 0.8


def _regression():
    x, y = make_regression(400, 8, n_targets=2, noise=1.0, random_state=1)
    return x, y / y.std(axis=0)


def test_fit_is_reproducible_and_a_pickle_predicts_and_trains_on_the_same(table):
    x, y = table
    first = MLPClassifier(max_iter=30, random_state=3, warm_start=True).fit(x, y)
    assert np.array_equal(first.predict_proba(x), MLPClassifier(max_iter=30, random_state=3).fit(x, y).predict_proba(x))
    copy = pickle.loads(pickle.dumps(first))
    assert np.array_equal(copy.predict_proba(x), first.predict_proba(x))
    first.fit(x, y)  # warm start: 30 more epochs from where it was, optimizer state included
    copy.fit(x, y)
    assert np.array_equal(copy.predict_proba(x), first.predict_proba(x)) and copy.n_iter_ == 60
    assert np.allclose(np.exp(first.predict_log_proba(x)), first.predict_proba(x))


def test_stopping_rules_records_and_partial_fit(table, capsys):
    x, y = table
    early = MLPClassifier(max_iter=500, early_stopping=True, n_iter_no_change=5, random_state=0, verbose=True)
    early.fit(x, y)
    assert early.n_iter_ < 500 and len(early.validation_scores_) == early.n_iter_ == len(early.loss_curve_)
    assert early.best_validation_score_ == max(early.validation_scores_)
    assert "Iteration 1, loss = " in capsys.readouterr().out
    quiet = MLPClassifier(max_iter=500, tol=1e-2, n_iter_no_change=3, random_state=0).fit(x, y)
    assert quiet.n_iter_ < 500 and quiet.best_loss_ == min(quiet.loss_curve_)
    online = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="first call to partial_fit needs classes"):
        online.partial_fit(x[:100], y[:100])
    for start in range(0, 600, 100):
        online.partial_fit(x[start:start + 100], y[start:start + 100], classes=["cat", "dog", "eel"])
    assert online.n_iter_ == 6 and online.t_ == 600 and list(online.classes_) == ["cat", "dog", "eel"]
    with pytest.raises(ValueError, match="not among classes_"):
        online.partial_fit(x[:5], ["fox"] * 5)


def test_alpha_is_scikit_learns_l2_penalty(table):
    x, y = table
    plain = MLPClassifier(max_iter=5, random_state=0).fit(x, y)
    penalised = MLPClassifier(max_iter=5, random_state=0, alpha=1.0).fit(x, y)
    assert penalised.model_.layers[0].kernel_regularizer.l2 == 1.0 / (2 * 200)  # alpha / (2 · batch)
    norm = lambda est: sum((layer.params["W"] ** 2).sum() for layer in est.model_.layers)  # noqa: E731
    assert norm(penalised) < norm(plain) and penalised.loss_curve_[0] > plain.loss_curve_[0]
    with pytest.raises(ValueError, match="solver must be 'adam' or 'sgd'"):
        MLPClassifier(solver="lbfgs").fit(x, y)
    with pytest.raises(ValueError, match="activation must be one of identity, logistic, tanh, relu"):
        MLPRegressor(activation="gelu").fit(*_regression())


def test_dropout_and_batch_norm_act_in_fit_and_predict_with_the_moving_statistics(table):
    x, y = table
    fitted = MLPClassifier((32,), dropout=0.3, batch_norm=True, batch_size=32, max_iter=20, random_state=0)
    fitted.fit(x, y)  # 380 steps: the moving averages (momentum 0.99) have caught up with the data
    hidden, out = fitted.model_.layers
    assert out.dropout == 0.3 and hidden.dropout == 0.0 and hidden.batch_norm is not None
    bn, state = hidden.batch_norm, hidden.state
    assert not np.allclose(state["moving_variance"], 1.0)  # the moving averages followed the batches
    h = np.maximum(x @ hidden.params["W"] + hidden.params["b"], 0.0)  # relu, then the normalization
    h = hidden.params["gamma"] * (h - state["moving_mean"]) / np.sqrt(state["moving_variance"] + bn.epsilon)
    z = (h + hidden.params["beta"]) @ out.params["W"] + out.params["b"]  # inference: no dropout mask
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(fitted.predict_proba(x), expected / expected.sum(axis=1, keepdims=True), rtol=1e-10)
    assert fitted.score(x, y) > 0.8
    plain = MLPClassifier((32,), batch_size=32, max_iter=20, random_state=0).fit(x, y)
    assert plain.loss_curve_[1:] != fitted.loss_curve_[1:]
    for bad, message in (({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
                         ({"batch_norm": "yes"}, "batch_norm must be True or False")):
        with pytest.raises(ValueError, match=message):
            MLPClassifier(**bad).fit(x, y)
