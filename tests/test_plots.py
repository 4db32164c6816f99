
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fcnet
from fcnet import plots
from fcnet.records import RunMetrics

NAMES = ["zero", "one", "two"]


def test_confusion_matrix_and_classification_report_by_hand():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    assert_array_equal(plots.confusion_matrix(y_true, y_pred, 3), [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    report = plots.classification_report(y_true, y_pred, NAMES)
    assert [r["support"] for r in report] == [2, 3, 1]
    assert report[1]["precision"] == pytest.approx(2 / 3) and report[1]["recall"] == pytest.approx(2 / 3)
    assert report[0] == {"class": "zero", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert report[2]["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)


@pytest.mark.slow
def test_prediction_grid_captions_and_marks_mistakes_in_red():
    images = np.zeros((4, 28, 28), np.uint8)
    y_true = np.array([0, 1, 2, 2])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    fig = plots.prediction_grid(images, y_true, probs, NAMES)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == "True: zero\nPred: zero (0.90)" and titles[2] == "True: two\nPred: zero (0.60)"
    colors = [ax.title.get_color() for ax in fig.axes if ax.get_title()]
    assert colors == ["black", "black", "red", "black"]
    mistakes = plots.confident_mistakes(images, y_true, probs, NAMES)
    assert [ax.get_title() for ax in mistakes.axes if ax.get_title()] == ["True: two\nPred: zero (0.60)"]


def test_learning_curves_overlay_runs_with_train_and_validation_lines():
    h1 = {"loss": [1.0, 0.5], "accuracy": [0.6, 0.8], "val_loss": [1.1, 0.7], "val_accuracy": [0.5, 0.7]}
    h2 = RunMetrics({}, "4-2", 1, [{"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": None,
                                    "val_accuracy": None}], 1.0, "numpy", {})
    fig = plots.learning_curves([h1, h2], labels=["a", "b"])
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["a train", "a validation", "b train"]
    assert list(acc_ax.lines[1].get_ydata()) == [0.5, 0.7]


def test_first_layer_weights_draws_each_unit(tmp_path):
    model = fcnet.Sequential([fcnet.Dense(6, "relu", input_dim=784), fcnet.Dense(3, "softmax")], seed=0)
    fig = plots.first_layer_weights(model, k=4)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4
    assert_array_equal(drawn[2].images[0].get_array(), model.parameters[0][:, 2].reshape(28, 28))
    path = plots.save(fig, tmp_path / "w.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_figures_integer_epochs_a_weight_scale_and_natural_axes(tmp_path):
    from fcnet import plots
    from fcnet.sweep import _natural

    fig = plots.learning_curves({"loss": [1.0, 0.5, 0.4], "accuracy": [0.5, 0.7, 0.8]})
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    model = fcnet.Sequential([fcnet.Dense(4, input_dim=784)], seed=0)
    fig = plots.first_layer_weights(model, k=4)
    assert len(fig.axes) == 4 + 1 and fig.axes[-1].get_ylabel() == "weight"  # the colour bar
    assert sorted(["1024", "128", "256", "512", "64", "64,32"], key=_natural) == [
        "64", "64,32", "128", "256", "512", "1024"]
