import pytest

from rcl.config import TrainConfig


def test_default_config_is_valid_and_round_trips(tmp_path):
    config = TrainConfig().check()
    path = tmp_path / "c.json"
    config.save(path)
    assert TrainConfig.load(path) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(data="/no/such/folder"), "dataset '/no/such/folder' does not exist"),
        (dict(loss="dice"), "unknown loss 'dice'"),
        (dict(model="resnet1000"), "unknown model 'resnet1000'"),
        (dict(alpha=-1), "alpha must be a finite number >= 0"),
        (dict(beta=float("nan")), "beta must be a finite number >= 0"),
        (dict(epochs=0), "epochs must be a whole number >= 1"),
        (dict(preset="chest"), "unknown preset 'chest'"),
        (dict(matrix=[[1, 2], [3, 4]]), r"must be 7 × 7"),
        (dict(select="f1_cer_cap"), "needs cer_cap"),
        (dict(weights="/no/weights.pt"), "weights file '/no/weights.pt' does not exist"),
        (dict(val_fraction=0.6, test_fraction=0.5), "sum to less than 1"),
    ],
)
def test_bad_configs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).check()


def test_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        TrainConfig.from_dict({"colour": "red"})
