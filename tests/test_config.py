"""TrainConfig: the one home of every training setting, its check and its default; the CLI built from it."""

import argparse
import dataclasses

import pytest

from fcnet import TrainConfig
from fcnet.cli import build_parser
from fcnet.config import varied


def test_values_are_converted_once_from_text_or_python_values():
    text = TrainConfig(hidden="256, 128", lr="0.01", epochs="3", batch_size=32.0, validation_split="0.1")
    assert (text.hidden, text.lr, text.epochs, text.batch_size, text.validation_split) == ((256, 128), 0.01, 3, 32, 0.1)
    assert TrainConfig(hidden=64).hidden == (64,) and TrainConfig(hidden=[8, 4]).hidden == (8, 4)
    assert TrainConfig(hidden="none").hidden == () == TrainConfig(hidden="").hidden
    assert isinstance(TrainConfig(epochs="3").epochs, int)


@pytest.mark.parametrize("field, value, message", [
    ("lr", -1, "lr must be a number > 0, got -1"),
    ("lr", float("nan"), "lr must be a number > 0"),
    ("epochs", 0, "epochs must be an integer ≥ 1, got 0"),
    ("epochs", 2.5, "epochs must be an integer ≥ 1"),
    ("batch_size", True, "batch_size must be an integer ≥ 1"),
    ("hidden", "300,x", "hidden must be integers ≥ 1 separated by commas"),
    ("hidden", [0], "hidden must be integers ≥ 1"),
    ("validation_split", 1, "validation_split must be in [0, 1)"),
    ("lr_decay", 0, "lr_decay must be in (0, 1]"),
    ("activation", "mish", "activation must be one of linear, relu"),
    ("optimizer", "Adam", "optimizer must be one of sgd, adam, adamw, rmsprop"),
    ("dataset", "cifar", "dataset must be one of mnist, fashion-mnist, kmnist, idx:DIR, or a table"),
    ("dtype", "float16", "dtype must be one of float32, float64"),
    ("engine", "gpu", "engine must be one of auto, numpy, numba, cuda"),
    ("seed", -1, "seed must be an integer ≥ 0"),
    ("limit", 0, "limit must be an integer ≥ 1"),
])
def test_a_bad_value_is_a_one_line_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settings_are_checked_together_and_the_config_is_frozen():
    with pytest.raises(ValueError, match="momentum applies to optimizer sgd only"):
        TrainConfig(optimizer="adam", momentum=0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0
    with pytest.raises(ValueError, match="epochs must be"):
        TrainConfig().replace(epochs=0)


def test_from_dict_round_trips_and_refuses_unknown_settings():
    config = TrainConfig(dataset="fashion-mnist", hidden=(256, 128), optimizer="adam", lr=1e-3, seed=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["hidden"] == [256, 128]  # JSON-able
    with pytest.raises(ValueError, match="unknown setting 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_identity_is_the_difference_from_the_defaults():
    assert TrainConfig().changes() == {}
    assert TrainConfig(lr=0.1, hidden="300").identity() == TrainConfig().identity()  # defaults spelled out
    assert TrainConfig(seed=1).identity() != TrainConfig().identity()
    assert TrainConfig(data_dir="/data").identity() == TrainConfig().identity()  # where, not what
    assert TrainConfig(hidden=(64,), epochs=2).changes() == {"hidden": [64], "epochs": 2}
    # the id the argparse-based sweeps of fcnet 0.1 gave this trial: sweep folders made then still resume
    assert TrainConfig(hidden=(64,), epochs=2).identity() == "f13182df2c44"


def test_varied_names_the_settings_that_differ():
    configs = [TrainConfig(seed=s, hidden=h).to_dict() for s in (0, 1) for h in ((64,), (64,))]
    assert varied(configs) == ["seed"]
    assert varied([{"a": 1}, {"a": 1, "b": None}]) == []


def test_the_cli_flags_are_the_config_fields():
    train = build_parser().subcommands["train"]
    flags = {a.dest: a for a in train._actions if a.option_strings}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields <= set(flags)
    # not given: the config has the defaults (a switch such as --batch-norm is then absent)
    assert all(flags[name].default in (None, argparse.SUPPRESS) for name in fields)
    assert set(flags) - fields == {"help", "out", "metrics_json", "quiet", "no_figures", "resume"}
    assert "(default: 300)" in flags["hidden"].help and "(default: 0.1)" in flags["lr"].help
    assert all(flags[name].help.count("default") <= 1 for name in fields)
    assert "(default" not in flags["data_dir"].help and "(default" not in flags["limit"].help
