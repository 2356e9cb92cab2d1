"""benchmarks/label_noise.py end to end on a tiny synthetic setting, so the script cannot rot."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import label_noise  # noqa: E402

TINY = ["--data", "synthetic", "--limit", "150", "--epochs", "1", "--max-steps", "2", "--image-size", "32",
        "--seeds", "0", "--device", "cpu"]


@pytest.mark.parametrize("asked, trained_on, copied", [("auto", "cpu", True), ("cpu", "cpu", True),
                                                       ("auto", "cuda:0", False)])
def test_reuse_compares_the_device_a_run_trained_on_not_the_one_asked(tmp_path, asked, trained_on, copied):
    """A finished run asked for "auto" that trained on the CPU is the same training as one asked for
    "cpu" here (the ablation asks "auto", the label-noise grid "cpu"); one that trained on a GPU is not."""
    from benchmarks.parallel import reuse_finished
    from rcl.config import TrainConfig

    config = TrainConfig(data="synthetic", model="small_cnn", image_size=32, epochs=1, device="cpu", name="clean-CE")
    stored = TrainConfig.from_dict(config.to_dict()).check().to_dict() | {"device": asked, "name": "CE-seed0",
                                                                         "sampling": config.resolved_sampling()}
    source = tmp_path / "ablation" / "CE-seed0"
    source.mkdir(parents=True)
    (source / "config.json").write_text(json.dumps({"train": stored, "device": trained_on}))
    (source / "metrics.json").write_text("{}")
    left = reuse_finished([config], tmp_path / "grid", [tmp_path / "ablation"])
    assert (left == []) is copied and (tmp_path / "grid" / "clean-CE" / "metrics.json").is_file() is copied


def test_a_missing_reuse_folder_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="--reuse: /no/such is not a folder of finished runs"):
        label_noise.main([*TINY, "--losses", "CE", "--noises", "none", "--out", str(tmp_path / "o"),
                          "--runs", str(tmp_path / "r"), "--reuse", "/no/such"])


def test_bad_loss_is_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="--losses: unknown MSE; choose from CE, WCE, Focal, RCL-Proposed"):
        label_noise.main([*TINY, "--losses", "CE,MSE", "--out", str(tmp_path)])


@pytest.mark.slow
def test_trains_records_resumes_and_writes_the_table(tmp_path, capsys):
    out, runs = tmp_path / "results", tmp_path / "runs"
    grid = [*TINY, "--losses", "CE,RCL-Proposed", "--noises", "none,miss:0.1", "--out", str(out), "--runs", str(runs)]
    assert label_noise.main([*grid, "--jobs", "2"]) == 0
    rows = json.loads((out / "label_noise.json").read_text())
    assert sorted(r["name"] for r in rows) == ["clean-CE-seed0", "clean-RCL-Proposed-seed0",
                                               "miss0.1-CE-seed0", "miss0.1-RCL-Proposed-seed0"]
    noisy = json.loads((runs / "miss0.1-CE-seed0" / "label_noise.json").read_text())
    assert noisy["spec"] == "miss:0.1" and noisy["flipped"] == len(noisy["samples"]) > 0
    assert {r["loss"] for r in rows} == {"CE", "RCL-Proposed"} and all(0 <= r["argmax_f1"] <= 1 for r in rows)
    stored = json.loads((runs / "miss0.1-RCL-Proposed-seed0" / "metrics.json").read_text())
    rcl_row = next(r for r in rows if r["name"] == "miss0.1-RCL-Proposed-seed0")
    assert rcl_row["default_f1"] == pytest.approx(stored["decision"]["test"]["f1_macro"])  # the run's own decision
    assert rcl_row["argmax_f1"] == pytest.approx(stored["test"]["f1_macro"])

    ce_row = next(r for r in rows if r["name"] == "clean-CE-seed0")
    assert label_noise.main(grid) == 0  # resumes: nothing retrained, no row doubled
    assert "4 of 4 trials already finished; 0 to train" in capsys.readouterr().err
    assert len(json.loads((out / "label_noise.json").read_text())) == 4

    # the same trainings under other names elsewhere are copied, not trained (a CPU run is deterministic)
    other = tmp_path / "other"
    assert label_noise.main([*TINY, "--losses", "CE", "--noises", "none,miss:0.2", "--out", str(tmp_path / "o"),
                             "--runs", str(other), "--reuse", str(runs)]) == 0
    err = capsys.readouterr().err
    assert f"clean-CE-seed0: the same training as {runs / 'clean-CE-seed0'}, copied" in err
    assert "1 of 2 trials already finished; 1 to train" in err  # miss:0.2 was trained nowhere
    copied = json.loads((tmp_path / "o" / "label_noise.json").read_text())
    assert next(r for r in copied if r["name"] == "clean-CE-seed0")["argmax_f1"] == ce_row["argmax_f1"]

    assert label_noise.main([*TINY, "--out", str(out), "--finder"]) == 0
    finder = [r for r in json.loads((out / "label_noise.json").read_text()) if r["kind"] == "finder"]
    assert len(finder) == 1 and finder[0]["k"] > 0 and 0 <= finder[0]["precision_at_k"] <= 1
    assert finder[0]["by_method"]["self_confidence"]["precision_at_k"] == finder[0]["precision_at_k"]  # the default
    assert set(finder[0]["by_method"]) == {"self_confidence", "normalized_margin", "confidence_weighted_entropy",
                                           "p_malignant"}
    assert label_noise.main([*TINY, "--out", str(out), "--finder", "--folds", "2", "--finder-epochs", "1"]) == 0
    names = [r["name"] for r in json.loads((out / "label_noise.json").read_text()) if r["kind"] == "finder"]
    assert names == ["finder-miss0.1-seed0", "finder-miss0.1-2folds-1ep-seed0"]  # another setting: another row

    assert label_noise.main(["--table", "--out", str(out)]) == 0
    text = (out / "label_noise.md").read_text()
    assert "python benchmarks/label_noise.py --data synthetic --preset isic2018 --model cnn4 --image-size 32 " \
           "--epochs 1 --limit 150 --max-steps 2 --device cpu --seeds 0 --losses CE,RCL-Proposed --noises none,miss:0.1 --jobs 2" in text
    ce_clean = next(r for r in rows if r["name"] == "clean-CE-seed0")
    assert f"| CE | none | 1 | {100 * ce_clean['argmax_cer']:.1f} ± 0.0 |" in text
    assert "degrades least" in text and ("one seed, no spread" in text or "is none: a tie" in text)
    assert f"| 0 | 3 × 10 epochs | {finder[0]['n']} | {finder[0]['k']} |" in text and "| 0 | 2 × 1 epochs |" in text
    assert "with the finder's default settings: **" in text and "over 1 seed)" in text  # the 2-fold row is not averaged in
    assert "| self_confidence: p@k / p@k/2 |" in text
    assert "--seeds 0 --finder\n" in text and "--seeds 0 --finder --folds 2 --finder-epochs 1\n" in text
    assert (out / "label_noise.png").stat().st_size > 10_000


def _row(loss, noise, seed, cer, f1):
    kind, rate = (noise.split(":")[0], float(noise.split(":")[1])) if ":" in noise else ("none", 0.0)
    values = {f"{d}_{m}{end}": v for d in label_noise.DECISIONS for m, v in (("cer", cer), ("f1", f1))
              for end in ("", "_low", "_high")}
    return {"kind": "training", "name": f"{noise}-{loss}-seed{seed}", "loss": loss, "noise": noise,
            "noise_kind": kind, "rate": rate, "seed": seed, "recipe": {}, **values}


def test_the_plain_words_answer_is_computed_from_the_numbers():
    # CE's CER rises 10 then 20 points under miss noise; RCL-Proposed's 1 then 3 (seed 1: 3 then 5).
    rows = []
    for seed, extra in ((0, 0.0), (1, 0.02)):
        rows += [_row("CE", "none", seed, 0.40, 0.46), _row("CE", "miss:0.1", seed, 0.50, 0.45),
                 _row("CE", "miss:0.2", seed, 0.60, 0.44), _row("RCL-Proposed", "none", seed, 0.20, 0.36),
                 _row("RCL-Proposed", "miss:0.1", seed, 0.21 + extra, 0.36),
                 _row("RCL-Proposed", "miss:0.2", seed, 0.23 + extra, 0.35)]
    data, stats = label_noise.summary_frame(rows)
    text = label_noise.answer(data, "miss", "argmax")
    assert text.startswith("With miss noise in the training labels and the argmax decision, **RCL-Proposed** "
                           "degrades least: its test CER moves +3.0 points")
    assert "(20.0% clean → 24.0% at 20%)" in text and "CE +15.0 points" in text
    assert "The gap to CE (12.0 points) is larger than the seed-to-seed sd" in text
    assert "Its F1-macro: 0.360 clean against 0.460 for CE, the best; 0.350 at 20% miss noise" in text
    assert text.endswith("At 20% miss noise the lowest test CER is RCL-Proposed's (24.0%, F1 0.350): the same loss.")
    # CE now degrades least (+1, +2 points) but stays far above RCL-Proposed's CER: the answer says both.
    for r in rows:
        if r["loss"] == "CE" and r["noise"] != "none":
            for end in ("", "_low", "_high"):
                r[f"argmax_cer{end}"] = 0.41 if r["noise"] == "miss:0.1" else 0.42
    data, _ = label_noise.summary_frame(rows)
    text = label_noise.answer(data, "miss", "argmax")
    assert "**CE** degrades least" in text
    assert text.endswith("At 20% miss noise the lowest test CER is RCL-Proposed's (24.0%, F1 0.350), against 42.0% for "
                         "CE: the loss that degrades least is not the safest one there.")
    assert "| CE | miss:0.2 | 2 | 60.0 ± 0.0 | 60.0–60.0 | 0.440 ± 0.000 |" in label_noise.results_table(stats)
