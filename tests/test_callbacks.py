"""Keras' training callbacks: EarlyStopping, ModelCheckpoint, CSVLogger, LearningRateScheduler, ReduceLROnPlateau."""

import csv

import numpy as np
import pytest
from conftest import tiny_data, tiny_net
from numpy.testing import assert_array_equal

import fcnet
from fcnet.callbacks import CSVLogger, EarlyStopping, LearningRateScheduler, LivePlot, ModelCheckpoint


def overfitting():
    """Few noisy examples and a wide net: validation loss falls, then rises."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 10)), rng.integers(0, 3, 120)
    x[:, 0] += y  # a little signal
    model = fcnet.Sequential([fcnet.Dense(64, "relu", input_dim=10), fcnet.Dense(3, "softmax")], seed=0,
                             dtype="float64")
    model.compile(fcnet.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, x, y


def test_early_stopping_restores_the_best_epoch_which_model_checkpoint_saved(tmp_path):
    model, x, y = overfitting()
    stop = EarlyStopping(patience=3, restore_best_weights=True)
    best = ModelCheckpoint(tmp_path / "best.npz", save_best_only=True)
    every = ModelCheckpoint(tmp_path / "e{epoch:02d}-{val_loss:.3f}.npz", monitor="val_loss")
    history = model.fit(x, y, epochs=100, batch_size=16, validation_split=0.3, verbose=0, callbacks=[stop, best, every])
    losses = history.history["val_loss"]
    assert stop.stopped_epoch == len(losses) - 1 < 99  # stopped early
    assert stop.best_epoch == int(np.argmin(losses)) and stop.stopped_epoch == stop.best_epoch + 3
    for p, q in zip(model.parameters, fcnet.load_model(tmp_path / "best.npz").parameters):
        assert_array_equal(p, q)  # the restored weights are the saved best ones
    saved = sorted(p.name for p in tmp_path.glob("e*.npz"))
    assert len(saved) == len(losses) and saved[0] == f"e01-{losses[0]:.3f}.npz"


def test_early_stopping_patience_baseline_and_a_missing_monitor():
    model, x, y = overfitting()
    never = EarlyStopping(monitor="loss", patience=2, baseline=-1.0)  # the training loss never beats -1
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0, callbacks=[never])
    assert len(history.history["loss"]) == 2 and never.stopped_epoch == 1  # as Keras: patience counts from epoch 1
    with pytest.raises(ValueError, match="monitors 'val_loss', which the epoch's logs do not have"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])
    accuracy = EarlyStopping(monitor="val_accuracy")
    assert accuracy.mode == "max"


def test_csv_logger_writes_every_epoch_and_appends(tmp_path):
    model, x, y = overfitting()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=3, verbose=0, validation_split=0.2, callbacks=[CSVLogger(path)])
    model.fit(x, y, epochs=5, initial_epoch=3, verbose=0, validation_split=0.2,
              callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "accuracy", "epoch_seconds", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"]


def test_learning_rate_scheduler_sets_each_epochs_rate():
    model, x, y = overfitting()
    history = model.fit(x, y, epochs=4, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else lr / 2)])
    assert history.history["lr"] == [0.1, 0.05, 0.025, 0.0125] and model.optimizer.learning_rate == 0.0125
    with pytest.raises(ValueError, match="schedule gave learning rate -1.0 for epoch 1"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e, lr: -1.0)])


def test_reduce_lr_on_plateau_follows_keras_rule_by_hand():
    from fcnet.callbacks import ReduceLROnPlateau

    model = fcnet.Sequential([fcnet.Dense(2, input_dim=2)], seed=0)
    model.compile(fcnet.SGD(1.0), "mse")
    cb = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_delta=0.01, min_lr=0.2)
    cb.model = model
    cb.on_train_begin({})
    rates = []
    #        improves, flat, flat → cut; cooldown epoch; flat, flat → cut; flat, flat → cut (floored at min_lr), ...
    for epoch, loss in enumerate([1.0, 0.995, 0.999, 0.998, 0.997, 0.996, 0.996, 0.5, 0.6, 0.7, 0.8, 0.9]):
        logs = {"val_loss": loss}
        cb.on_epoch_end(epoch, logs)
        rates.append(model.optimizer.learning_rate)
        assert logs["lr"] == (rates[-2] if epoch else 1.0)  # the rate the epoch trained with
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    with pytest.raises(ValueError, match="factor must be in"):
        ReduceLROnPlateau(factor=1.5)


def test_reduce_lr_on_plateau_in_fit_lowers_the_rate_when_validation_stalls():
    from fcnet.callbacks import ReduceLROnPlateau

    model, x, y = overfitting()
    history = model.fit(x, y, epochs=30, batch_size=16, validation_split=0.3, verbose=0,
                        callbacks=[ReduceLROnPlateau(factor=0.5, patience=2)])
    rates = history.history["lr"]
    assert rates[0] == 0.02 and rates[-1] < 0.02 and all(a >= b for a, b in zip(rates, rates[1:]))


@pytest.mark.slow
def test_live_plot_redraws_the_curves_every_epoch(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = tiny_data()
    sizes = []

    class Watch(fcnet.Callback):
        def on_epoch_end(self, epoch, logs):
            sizes.append((tmp_path / "live.png").stat().st_size)

    tiny_net().fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[LivePlot(tmp_path / "live.png"), Watch()])
    assert len(sizes) == 3 and all(s > 1000 for s in sizes) and len(set(sizes)) > 1
