import pytest
import torch

import rcl
from rcl.config import DEVICE_DEFAULTS, TrainConfig


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
        (dict(augment="sepia"), "unknown augment 'sepia'"),
        (dict(device="tpu"), "unknown device 'tpu'"),
    ],
)
def test_bad_configs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes).check()


def test_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        TrainConfig.from_dict({"colour": "red"})


@pytest.mark.parametrize("device, kind", [(torch.device("cpu"), "cpu"), (torch.device("cuda"), "gpu")])
def test_auto_model_and_size_follow_the_device_and_explicit_values_win(monkeypatch, device, kind):
    monkeypatch.setattr("rcl.models.pick_device", lambda requested: device)
    resolved = TrainConfig().resolve_auto()
    assert (resolved.model, resolved.image_size) == (DEVICE_DEFAULTS[kind]["model"], DEVICE_DEFAULTS[kind]["image_size"])
    assert TrainConfig(model="small_cnn", image_size=48).resolve_auto().image_size == 48
    assert TrainConfig(model="small_cnn").resolve_auto().image_size == DEVICE_DEFAULTS[kind]["image_size"]


def test_defaults_on_cpu_are_the_measured_recipe(monkeypatch):
    monkeypatch.setattr("rcl.models.pick_device", lambda requested: torch.device("cpu"))
    config = TrainConfig().check()
    assert (config.model, config.image_size, config.epochs, config.batch_size, config.patience) == ("cnn4", 40, 28, 64, None)


def test_demo_config_uses_all_synthetic_images_and_a_large_test_split():
    config = rcl.demo_config().check()
    assert config.data == "synthetic" and config.limit is None and config.test_fraction >= 0.3
    assert (config.model, config.loss) == ("small_cnn", "ce")
