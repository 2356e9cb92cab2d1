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
        (dict(weights="/no/weights.pt"), "weights '/no/weights.pt': no such file, nor a finished run folder holding model.safetensors"),
        (dict(val_fraction=0.6, test_fraction=0.5), "sum to less than 1"),
        (dict(augment="sepia"), "unknown augment 'sepia'"),
        (dict(sampling="balanced"), "sampling must be 'auto' or one of: shuffle, sqrt_balanced; got 'balanced'"),
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
    assert (config.model, config.image_size, config.epochs, config.batch_size, config.patience) == ("cnn4", 40, 24, 64, None)
    assert (config.weight_decay, config.resolved_sampling()) == (0.01, "sqrt_balanced")


def test_demo_config_uses_all_synthetic_images_and_a_large_test_split():
    config = rcl.demo_config().check()
    assert config.data == "synthetic" and config.limit is None and config.test_fraction >= 0.3
    assert (config.model, config.loss) == ("small_cnn", "ce")


@pytest.mark.parametrize("loss, sampling", [("ce", "sqrt_balanced"), ("focal", "sqrt_balanced"), ("RCL", "sqrt_balanced"),
                                            ("weighted-ce", "shuffle")])
def test_auto_sampling_draws_rare_classes_more_often_unless_the_loss_already_weights_them(loss, sampling):
    config = TrainConfig(loss=loss).check()
    assert config.sampling == "auto" and config.resolved_sampling() == sampling
    assert TrainConfig(loss=loss, sampling="shuffle").check().resolved_sampling() == "shuffle"  # a choice stays
    # a sweep derives its configs from a checked base: each loss still gets its own
    from rcl.ablation import ablation_configs

    by_loss = {c.loss: c.resolved_sampling() for c in ablation_configs(TrainConfig().check(), [0])}
    assert by_loss == {"ce": "sqrt_balanced", "wce": "shuffle", "focal": "sqrt_balanced",
                       "label_smoothing": "sqrt_balanced", "rcl": "sqrt_balanced"}


def test_a_run_from_before_the_sampling_option_reproduces_with_a_shuffle(tmp_path):
    stored = TrainConfig().check().to_dict()
    del stored["sampling"]
    (tmp_path / "config.json").write_text(__import__("json").dumps({"train": stored, "taxonomy": {}}))
    assert TrainConfig.load(tmp_path / "config.json").sampling == "shuffle"
