"""End to end: `rcl train` on the synthetic default for a few steps on CPU, then evaluate,
predict, runs, export, resume, reproducibility and one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from rcl.cli import main
from rcl.config import TrainConfig
from rcl.engine import load_run_data, make_loader, predict_logits
from rcl.paths import partial_dir
from rcl.runs import list_runs, load_model, load_run
from rcl.train import run_training

pytestmark = pytest.mark.slow

TINY = dict(data="synthetic", model="small_cnn", epochs=2, image_size=32, limit=360, seed=3, device="cpu",
            max_steps=4, batch_size=16)
TINY_ARGS = ["--data", "synthetic", "--model", "small_cnn", "--epochs", "2", "--image-size", "32", "--limit", "360",
             "--seed", "3", "--device", "cpu", "--max-steps", "4", "--batch-size", "16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """One tiny RCL run, trained once through the CLI for the whole module."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RCL_HOME", str(home))
        mp.setenv("RCL_CACHE", str(shared_cache))
        out = home / "run-a"
        assert main(["train", *TINY_ARGS, "--loss", "rcl", "--alpha", "2", "--beta", "10", "--out", str(out)]) == 0
    return out


def interrupt_after_first_epoch(config: TrainConfig, out: Path) -> None:
    """Start ``config`` into ``out`` and stop it as the first epoch ends, leaving a partial folder."""

    class Stop(Exception):
        pass

    def stop(event):
        if event["kind"] == "epoch":
            raise Stop

    with pytest.raises(Stop):
        run_training(config, out, stop)


def test_run_folder_is_complete(trained):
    for name in ("config.json", "metrics.json", "predictions.npz", "history.jsonl", "model.safetensors", "epochs.npz"):
        assert (trained / name).is_file(), name
    assert not (trained / "last.pt").exists()
    metrics = json.loads((trained / "metrics.json").read_text())
    for split in ("val", "test"):
        m = metrics[split]
        assert set(m["tiers"]) == {"correct", "visual_ambiguity", "type_1", "type_2"}
        assert sum(m["tiers"].values()) == m["n"] == np.sum(m["confusion"])
        assert 0 <= m["f1_macro"] <= 1 and 0 <= m["accuracy"] <= 1
    config = json.loads((trained / "config.json").read_text())
    assert config["train"]["loss"] == "rcl" and config["matrix"][0][1] in (1.0, 2.0, 10.0)
    assert config["train"]["sampling"] == "sqrt_balanced"  # "auto", as the run resolved it
    assert config["dataset"]["synthetic"] is True and config["versions"]["torch"]
    assert len((trained / "history.jsonl").read_text().splitlines()) == 2


def test_reloaded_checkpoint_reproduces_stored_test_predictions(trained):
    run = load_run(trained)
    config = TrainConfig.from_dict(run.train)
    data = load_run_data(config)
    loaded = load_model(trained)
    import torch

    logits = predict_logits(loaded.model, make_loader(data, "test", config, torch.device("cpu")), torch.device("cpu"))
    stored = run.predictions("test")
    np.testing.assert_array_equal(logits, stored["logits"])
    np.testing.assert_array_equal(data.ids[data.splits["test"]], stored["ids"])


def test_same_seed_same_metrics_and_resume_matches(trained, tmp_path):
    config = TrainConfig(**TINY, loss="rcl", alpha=2, beta=10)
    again = run_training(config, tmp_path / "again")
    reference = json.loads((trained / "metrics.json").read_text())
    for split in ("val", "test"):
        assert again[split] == reference[split]

    interrupt_after_first_epoch(config, tmp_path / "resumed")
    assert (partial_dir(tmp_path / "resumed") / "last.pt").is_file() and not (tmp_path / "resumed").exists()
    resumed = run_training(config, tmp_path / "resumed")
    for split in ("val", "test"):
        assert resumed[split] == reference[split]


def test_evaluate_predict_runs_export(trained, tmp_path, capsys):
    dataset_root = json.loads((trained / "config.json").read_text())["dataset"]["root"]
    out = tmp_path / "external.json"
    assert main(["evaluate", str(trained), "--data", dataset_root, "--label-noise", "miss:0.2", "--out", str(out)]) == 0
    external = json.loads(out.read_text())
    assert external["test"]["n"] > 300 and set(external["test"]["tiers"]) >= {"type_2"}
    # The illusion on the external labels: the clean side is the argmax figures above, and the noisy
    # side counts exactly the flipped malignant cases fewer in CER's denominator.
    illusion = external["illusion"]
    assert illusion["clean"]["cer"]["value"] == pytest.approx(external["test"]["cer"])
    assert illusion["noise"]["flipped"] == round(0.2 * illusion["noise"]["eligible"]) > 0
    assert illusion["noisy"]["n_malignant"] == illusion["clean"]["n_malignant"] - illusion["noise"]["flipped"]

    images = sorted(Path(dataset_root).rglob("*.png"))[:2]
    capsys.readouterr()
    assert main(["predict", str(trained), *map(str, images), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert len(predictions) == 2
    for p in predictions:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5
        assert 0 <= p["malignant_probability"] <= 1
        if p["answer"]["referred"]:
            assert p["decision"] is None and p["answer"]["label"] is None
        else:
            assert p["decision"] == p["answer"]["label"] and p["decision"] in p["probabilities"]

    assert main(["runs", "--json"]) == 0  # empty data dir in this test: still fine
    assert main(["export", str(trained), "--name", "demo"]) == 0
    exported = load_model(Path(str(tmp_path / "models")) / "demo")
    assert exported.taxonomy.num_classes == 7 and exported.synthetic
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "models" / "demo"), str(images[0])]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert main(["export", str(trained), "--name", "demo"]) == 2  # exists: refuse without --overwrite


def test_runs_lists_finished_runs(trained, monkeypatch, capsys):
    monkeypatch.setenv("RCL_HOME", str(trained.parent))
    assert [r.id for r in list_runs()] == ["run-a"]
    assert main(["runs"]) == 0
    assert "run-a" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "/no/such/folder"], "dataset '/no/such/folder' does not exist"),
        (["train", "--data", "synthetic", "--model", "resnet1000"], "unknown model 'resnet1000'"),
        (["train", "--data", "synthetic", "--matrix", "MATRIX"], "does not fit the data's classes"),
        (["predict", "CHECKPOINT", "x.png"], "not a readable checkpoint"),
    ],
)
def test_user_errors_are_one_line(args, message, tmp_path, trained, capsys):
    matrix = tmp_path / "m.json"
    matrix.write_text(json.dumps({"classes": ["a", "b"], "values": [[1, 2], [3, 1]],
                                  "taxonomy": {"classes": [{"name": "a", "superclass": "benign"},
                                                           {"name": "b", "superclass": "malignant"}]}}))
    fake_run = tmp_path / "fake"
    fake_run.mkdir()
    (fake_run / "config.json").write_text((trained / "config.json").read_text())
    (fake_run / "model.safetensors").write_text("not weights")
    args = [str(matrix) if a == "MATRIX" else str(fake_run) if a == "CHECKPOINT" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_ablation_grid_writes_one_table(tmp_path):
    out = tmp_path / "ablation"
    assert main(["ablation", *TINY_ARGS, "--epochs", "1", "--max-steps", "2", "--seeds", "1", "--out", str(out)]) == 0
    markdown = (out / "results.md").read_text()
    for method in ("CE", "WCE", "Focal", "LS", "RCL-Light", "RCL-Proposed", "RCL-HighStruct"):
        assert f"| {method} |" in markdown
    assert len(list(out.glob("*/metrics.json"))) == 11


def test_unfamiliar_images_are_flagged(trained, tmp_path):
    from PIL import Image

    from rcl.triage import triage

    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["ood"]["val_flagged"] == pytest.approx(0.05, abs=0.04)  # ~5% of in-distribution by design
    abstention = metrics["abstention"]  # the test split answered as triage answers: flagged cases are referred
    n = abstention["n"]
    assert abstention["n_refer_unfamiliar"] == round(metrics["ood"]["test_flagged"] * n)
    assert abstention["n_answered"] + abstention["n_refer_uncertain"] + abstention["n_refer_unfamiliar"] == n
    assert abstention["coverage"]["value"] == pytest.approx(abstention["n_answered"] / n)
    assert "run's default decision" in abstention["decision"]
    loaded = load_model(trained)
    rng = np.random.default_rng(0)
    flags = []
    for i in range(30):
        noise = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        path = tmp_path / f"noise{i}.png"
        noise.save(path)
        result = triage(loaded, path)
        flags.append(result.unfamiliar)
        assert (result.answer.text == "refer: unfamiliar image") == result.unfamiliar
    assert np.mean(flags) >= 0.9


def test_cost_sensitive_run_warns_against_applying_costs_twice(trained):
    from rcl.answers import USER_MATRIX
    from rcl.triage import STACKING, triage

    metrics = json.loads((trained / "metrics.json").read_text())
    decision = metrics["decision"]
    assert decision["cost_sensitive_training"] is True and decision["rule"] == "bayes (scale tuned on validation)"
    assert metrics["calibration"]["temperature"] > 0 and "rule" in metrics["referral"]
    assert set(metrics["test"]["ci"]["cer"]) >= {"value", "low", "high"}
    loaded = load_model(trained)
    dataset_root = json.loads((trained / "config.json").read_text())["dataset"]["root"]
    image = sorted(Path(dataset_root).rglob("*.png"))[0]
    own = triage(loaded, image)
    assert STACKING not in own.flags and own.decision_rule.startswith("the run's default decision")
    raw = triage(loaded, image, matrix=loaded.matrix)
    assert STACKING in raw.flags and raw.decision_rule == USER_MATRIX


def test_reselect_a_finished_run_without_retraining(trained, capsys):
    from rcl.runs import load_run

    run = load_run(trained)
    same = run.reselect(run.train["select"])
    assert same["epoch"] == run.metrics["selected_epoch"]
    assert same["test"]["confusion"] == run.metrics["test"]["confusion"]  # stored logits = saved checkpoint
    last = run.reselect("last")
    assert last["epoch"] == len(run.history())
    assert main(["reselect", str(trained), "--select", "expected_cost"]) == 0
    assert "rule expected_cost: epoch" in capsys.readouterr().out


def test_evaluate_label_noise_scores_the_runs_own_test_split_clean_and_noisy(trained, tmp_path, capsys):
    from rcl.labels.illusion import illusion_of_accuracy

    capsys.readouterr()
    assert main(["evaluate", str(trained), "--label-noise", "miss:0.2", "--seed", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = illusion_of_accuracy(load_run(trained), "miss:0.2", seed=3)
    assert printed["noise"] == expected["noise"] and printed["noise"]["flipped"] > 0
    for side in ("clean", "noisy"):
        assert printed[side]["cer"] == pytest.approx(expected[side]["cer"])
    assert printed["clean"]["cer"]["value"] == pytest.approx(json.loads((trained / "metrics.json").read_text())["test"]["cer"])

    assert main(["evaluate", str(trained), "--label-noise", "miss:0.2"]) == 0
    table = capsys.readouterr().out
    assert "clean test labels" in table and "noisy test labels" in table and "argmax" in table

    # Neither a dataset nor a noise rule, or a bad rule: one line each, before any inference.
    assert main(["evaluate", str(trained)]) == 2
    assert "--data: give the dataset" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--data", str(tmp_path / "missing"), "--label-noise", "flip:0.1"]) == 2
    assert "unknown kind 'flip'" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--label-noise", "miss:0.1", "--preset", "isic2018"]) == 2
    assert "describe the data given with --data" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--data", str(tmp_path), "--ood-only", "--label-noise", "miss:0.1"]) == 2
    assert "--ood-only reads none" in capsys.readouterr().err


def test_evaluate_ood_only_on_data_of_other_classes(trained, tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (tmp_path / "other" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "other" / label / f"{i}.png")
    other = str(tmp_path / "other")
    assert main(["evaluate", str(trained), "--data", other]) == 2
    assert "--ood-only" in capsys.readouterr().err
    assert main(["evaluate", str(trained), "--data", str(tmp_path / "missing")]) == 2
    assert "--ood-only" not in capsys.readouterr().err  # a missing folder is just missing
    out = tmp_path / "ood.json"
    assert main(["evaluate", str(trained), "--data", other, "--ood-only", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "test" not in result and result["ood"]["n"] == 12 and result["ood"]["flagged_share"] >= 0.9


def test_decisions_use_temperature_calibrated_probabilities(trained):
    from rcl.calibration import apply_temperature
    from rcl.runs import load_run

    run = load_run(trained)
    stored = run.predictions("test")
    calibrated = run.calibrated_probs("test")
    np.testing.assert_allclose(calibrated, apply_temperature(stored["logits"], run.metrics["calibration"]["temperature"]),
                               rtol=1e-6)
    np.testing.assert_array_equal(calibrated.argmax(1), stored["probs"].argmax(1))


def test_complete_run_is_refused_without_overwrite_and_a_diverging_retrain_leaves_it_untouched(trained, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    assert main(["train", *TINY_ARGS, "--out", str(trained)]) == 2
    assert "already holds a finished run: pass --overwrite" in capsys.readouterr().err
    assert main(["train", *TINY_ARGS, "--loss", "focal", "--lr", "1e30", "--overwrite", "--out", str(trained)]) == 2
    assert "training diverged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before
    assert load_run(trained).summary()["loss"] == "rcl"


def test_overwrite_replaces_a_run_and_keeps_files_training_does_not_write(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1, "max_steps": 1}, loss="ce")
    out = tmp_path / "run"
    run_training(config, out)
    (out / "train.log").write_text("job log\n")
    again = run_training(TrainConfig(**{**TINY, "epochs": 1, "max_steps": 1}, loss="focal"), out, overwrite=True)
    assert again["loss"] == "focal" and json.loads((out / "metrics.json").read_text())["loss"] == "focal"
    assert (out / "train.log").read_text() == "job log\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial or replaced folder left


def test_posthoc_analysis_recomputes_metrics_from_the_stored_arrays(trained, tmp_path):
    import shutil

    from rcl.posthoc import analyse

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / "ood.npz").unlink()
    stored = json.loads((trained / "metrics.json").read_text())
    fresh = json.loads(json.dumps(analyse(copy), default=float))
    for key in ("val", "test", "calibration", "decision", "referral", "ood", "abstention"):
        assert fresh[key] == stored[key], key
    assert (copy / "ood.npz").is_file()
    with np.load(trained / "features.npz") as features:
        assert features["train_features"].dtype == np.float16 and len(features["train_labels"]) > 0


def test_train_with_malignant_on_a_two_superclass_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, shade in (("cyst", 60), ("nodule", 120), ("tumour", 200)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(shade, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / cls / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "data"), "--malignant", "tumour", "--epochs", "1",
                 "--image-size", "16", "--batch-size", "8", "--device", "cpu", "--loss", "RCL", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["taxonomy"]["classes"] == [{"name": "cyst", "superclass": "benign"},
                                             {"name": "nodule", "superclass": "benign"},
                                             {"name": "tumour", "superclass": "malignant"}]
    assert config["train"]["malignant"] == ["tumour"]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tmp_path / "data"), "--malignant", "tumour", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["n"] == 60


def test_weight_average_is_what_is_evaluated_kept_and_resumed(tmp_path):
    """With ``ema`` the stored predictions come from the averaged weights (not the raw ones), and a
    run stopped after one epoch resumes to exactly the figures of one that never stopped."""
    import torch

    config = TrainConfig(**TINY, loss="ce", ema=0.9)
    reference = run_training(config, tmp_path / "ema")
    plain = run_training(TrainConfig(**TINY, loss="ce"), tmp_path / "plain")
    assert json.loads((tmp_path / "ema" / "config.json").read_text())["train"]["ema"] == 0.9
    ema_logits = load_run(tmp_path / "ema").predictions("test")["logits"]
    assert not np.allclose(ema_logits, load_run(tmp_path / "plain").predictions("test")["logits"])
    assert plain["test"] != reference["test"] or plain["val"] != reference["val"]
    loaded = load_model(tmp_path / "ema")  # the published weights are the averaged ones: they reproduce the arrays
    data = load_run_data(config)
    logits = predict_logits(loaded.model, make_loader(data, "test", config, torch.device("cpu")), torch.device("cpu"))
    np.testing.assert_array_equal(logits, ema_logits)

    interrupt_after_first_epoch(config, tmp_path / "resumed")
    resumed = run_training(config, tmp_path / "resumed")
    for split in ("val", "test"):
        assert resumed[split] == reference[split]


def test_ema_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="ema must be a decay between 0 and 1"):
        TrainConfig(ema=1.0).check()


def test_fine_tune_from_a_run_only_on_its_own_split(trained, tmp_path, capsys):
    """A run's weights (the file, or the run folder) start a fine-tune on the split it held out (the
    card names that run); a run of the same data with another seed trained on some of the new run's
    test images: refused."""
    from rcl.fine_tune import start_text
    from rcl.text import initialisation

    start = str(trained / "model.safetensors")
    out = tmp_path / "fine-tuned"
    assert main(["train", *TINY_ARGS, "--loss", "focal", "--epochs", "1", "--weights", start, "--out", str(out)]) == 0
    assert initialisation(load_run(out).train) == "fine-tuned from run run-a"
    assert start_text(load_run(out).train) == "fine-tuned from run run-a (trained from scratch, no ImageNet weights)"
    np.testing.assert_array_equal(load_run(out).predictions("test")["ids"], load_run(trained).predictions("test")["ids"])

    other_seed = [a if a != "3" else "4" for a in TINY_ARGS]  # --seed 3 → 4: another split of the same images
    assert main(["train", *other_seed, "--weights", str(trained), "--out", str(tmp_path / "leaky")]) == 2  # the folder
    message = capsys.readouterr().err.strip()
    assert "the start run run-a was trained on another split of this dataset" in message and "\n" not in message
    assert not (tmp_path / "leaky" / "metrics.json").exists()
