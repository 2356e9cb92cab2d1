import pickle

import pytest
import torch
from safetensors.torch import save_file

from rcl.models import load_weights, make_model, pick_device, read_state_dict


@pytest.mark.parametrize("name", ["small_cnn", "cnn4", "resnet18"])
def test_models_have_a_k_class_head(name):
    model = make_model(name, num_classes=7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_cnn4_is_small_cnn_one_block_deeper():
    shallow, deep = make_model("small_cnn", 7), make_model("cnn4", 7)
    assert (shallow.num_features, deep.num_features) == (128, 256)
    assert deep.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 256, 2, 2)
    assert shallow.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 128, 4, 4)


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match="unknown model 'resnet1000'.*Similar timm models: .*resnet"):
        make_model("resnet1000", 3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_load_and_head_is_resized(tmp_path, suffix):
    torch.manual_seed(0)
    source = make_model("resnet18", num_classes=1000)  # e.g. ImageNet weights saved elsewhere
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    torch.manual_seed(1)
    model = make_model("resnet18", num_classes=4, weights=path)
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 4  # head re-initialised for 4 classes, not copied


def test_files_that_are_not_checkpoints_are_clear_errors(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        read_state_dict(text)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        read_state_dict(evil)  # weights_only=True refuses arbitrary pickles
    with pytest.raises(ValueError, match="does not exist"):
        read_state_dict(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(3)}, str(other))
    with pytest.raises(ValueError, match="shares no weights"):
        load_weights(make_model("small_cnn", 3), other)


def test_pretrained_offline_is_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail fast instead of ~50 s of retries
    with pytest.raises(RuntimeError, match="could not load pretrained weights for 'resnet18'.*--weights FILE"):
        make_model("resnet18", 3, pretrained=True)


def test_device_selection_never_assumes_cuda():
    device = pick_device("auto")
    assert device.type in {"cuda", "mps", "cpu"}
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            pick_device("cuda")


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "resnet18"])
def test_models_are_built_for_the_runs_image_size(name):
    model = make_model(name, num_classes=4, image_size=64)  # a ViT's position embeddings follow the size
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


def test_the_papers_backbones_build_with_a_k_class_head():
    for name in ("resnet50", "vit_base_patch16_224"):
        model = make_model(name, num_classes=7, image_size=224)
        assert model.get_classifier().out_features == 7
