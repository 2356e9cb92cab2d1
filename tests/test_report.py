"""Run listing, confusion views, Type II samples, the run card, the paper's figures and the shared
wording (rcl.listing, rcl.confusion, rcl.run_card, rcl.paper, rcl.text; no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rcl import confusion, listing, paper, run_card, text
from rcl.metrics import evaluate
from rcl.runs import load_run
from rcl.severity import severity_matrix
from rcl.taxonomy import preset


def fake_run(root: Path, name: str, loss: str = "ce", seed: int = 0, flip: float = 0.2, ci: bool = False,
             images: bool = False) -> Path:
    """A well-formed run folder with made-up predictions (no training)."""
    taxonomy = preset("isic2018")
    rng = np.random.default_rng(seed)
    n, k = 140, taxonomy.num_classes
    labels = np.arange(n) % k
    pred = np.where(rng.random(n) < flip, rng.integers(0, k, n), labels)
    probs = np.full((n, k), 0.02, dtype=np.float32)
    probs[np.arange(n), pred] = 1 - 0.02 * (k - 1)
    ids = np.array([f"img/{i}.png" for i in range(n)])
    folder = root / name
    folder.mkdir(parents=True)
    if images:
        from PIL import Image

        (folder / "data" / "img").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i % 255, 0, 0)).save(folder / "data" / ids[i])
    test = evaluate(labels, pred, taxonomy).to_dict()
    if ci:
        test["ci"] = {"cer": {"value": test["cer"], "low": 0.1, "high": 0.3},
                      "f1_macro": {"value": test["f1_macro"], "low": 0.5, "high": 0.9}}
    config = {"train": {"data": "synthetic", "model": "small_cnn", "loss": loss, "alpha": 5.0, "beta": 20.0,
                        "seed": seed, "epochs": 2, "image_size": 32, "lr": 0.001, "name": None, "select": "f1"},
              "taxonomy": taxonomy.to_dict(), "matrix": severity_matrix(taxonomy).tolist(),
              "dataset": {"name": "synthetic", "synthetic": True, "root": str(folder / "data"),
                          "sizes": {"train": 500, "val": 140, "test": n}, "layout": "synthetic"},
              "created": "2024-01-01T00:00:00+00:00"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"test": test, "val": test, "epochs_run": 2,
                                                     "selected_epoch": 2}))
    np.savez(folder / "predictions.npz", test_probs=probs, test_labels=labels, test_ids=ids,
             test_logits=np.log(probs))
    return folder


def test_paper_results_cover_spec():
    rows = paper.PAPER_RESULTS
    isic = {(r["model"], r["method"]): r for r in rows if r["dataset"] == "ISIC 2018"}
    assert isic[("ResNet-50", "RCL-Proposed")]["cer"] == pytest.approx(0.1824)
    assert isic[("ResNet-50", "Focal")]["f1_macro"] == pytest.approx(0.692)
    assert isic[("ResNet-50", "RCL-Sparse")]["cer"] == pytest.approx(0.0358)
    assert len([r for r in rows if r["method"] in ("Focal", "RCL-Proposed")]) == 16


def test_run_rows_reads_summaries_and_skips_damaged(tmp_path):
    fake_run(tmp_path, "a", ci=True)
    fake_run(tmp_path, "b", loss="rcl", seed=1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    rows = listing.run_rows(tmp_path)
    assert [r["id"] for r in rows] == ["b", "a"]
    a = rows[1]
    assert (a["cer_low"], a["cer_high"], a["f1_low"], a["f1_high"]) == (0.1, 0.3, 0.5, 0.9)
    assert rows[0]["cer_low"] is None and rows[0]["alpha"] == 5.0
    assert "rcl α=5 β=20" in rows[0]["config"]
    assert [s[0] for s in listing.folder_signature(tmp_path)] == ["broken", "b", "a"]


def test_ci_bounds_of_a_bootstrap_result():
    assert listing.ci_bounds({"cer": {"value": 0.15, "low": 0.1, "high": None}}, "cer") == (0.1, None)
    assert listing.ci_bounds({}, "cer") == listing.ci_bounds(None, "cer") == (None, None)


def test_run_ci_computes_when_not_stored(tmp_path):
    run = load_run(fake_run(tmp_path, "a"))
    ci = listing.run_ci(run, n_resamples=200)
    low, high = listing.ci_bounds(ci, "cer")
    assert low is not None and low <= run.metrics["test"]["cer"] <= high


def test_front_flags():
    rows = [{"cer": 0.1, "f1_macro": 0.5}, {"cer": 0.2, "f1_macro": 0.4}, {"cer": None, "f1_macro": 0.9}]
    assert listing.front_flags(rows) == [True, False, False]


def test_confusion_view_normalises_rows_and_rejects_bad_shape():
    taxonomy = preset("brain_mri")
    view = confusion.confusion_view(np.eye(4, dtype=int) * 3 + 1, taxonomy, normalise=True)
    assert np.allclose(view["values"].sum(axis=1), 1)
    assert view["tiers"].shape == (4, 4)
    with pytest.raises(ValueError, match="expected 4"):
        confusion.confusion_view(np.ones((3, 3)), taxonomy)


def test_type2_samples_with_and_without_images(tmp_path):
    run = load_run(fake_run(tmp_path, "a", flip=0.6, images=True))
    samples = confusion.type2_samples(run)
    assert samples and all(s["path"] for s in samples)
    malignant = set(run.taxonomy.malignant)
    assert all(s["true"] in malignant and s["predicted"] not in malignant for s in samples)
    run2 = load_run(fake_run(tmp_path, "b", flip=0.6))
    assert all(s["path"] is None for s in confusion.type2_samples(run2))


def test_run_card_markdown_and_html(tmp_path):
    a = load_run(fake_run(tmp_path, "a", flip=0.1, ci=True))
    b = load_run(fake_run(tmp_path, "b", loss="rcl", seed=3, flip=0.5))
    card = run_card.run_card_markdown(a, [a, b])
    for needle in ("# Run card", "Research tool", "synthetic images", "Confusion matrix", "| **MEL** |",
                   "Critical Error Rate", "95% CI 10.0% – 30.0%", "Type II (fatal miss)", "Pareto front"):
        assert needle in card, needle
    html = run_card.run_card_html(a, [a, b])
    assert html.startswith("<!doctype html>") and "<table>" in html and "<h1>" in html
    assert "<script" not in html
    assert "dominated" in run_card.run_card_markdown(b, [a, b]) or "front" in run_card.run_card_markdown(b, [a, b])


def test_run_card_refuses_unfinished(tmp_path):
    folder = fake_run(tmp_path, "a")
    (folder / "metrics.json").unlink()
    with pytest.raises(ValueError, match="not finished"):
        run_card.run_card_markdown(load_run(folder))


def test_run_card_names_the_loss_with_its_penalties(tmp_path):
    b = load_run(fake_run(tmp_path, "b", loss="rcl", seed=3))
    assert "- Loss: `rcl α=5 β=20`" in run_card.run_card_markdown(b)
    # a run from before the sampling option drew each image once; a newer one says how it drew them
    assert "`rcl α=5 β=20`; each training image once per epoch" in run_card.run_card_markdown(b)
    config = json.loads((b.path / "config.json").read_text())
    config["train"]["sampling"] = "sqrt_balanced"
    (b.path / "config.json").write_text(json.dumps(config))
    assert "; rare diagnoses drawn more often" in run_card.run_card_markdown(load_run(b.path))


def test_paper_headline_is_computed_from_the_published_figures():
    claim = paper.headline("ISIC 2018", "ResNet-50")
    assert claim["cer_cut"] == pytest.approx(1 - 18.24 / 39.41) and text.pct(claim["cer_cut"]) == "53.7%"
    assert text.pct(claim["f1_kept"]) == "86.0%"
    assert [r["method"] for r in paper.published("ISIC 2018", "ResNet-50")] == \
        ["CE", "WCE", "Focal", "LS", "RCL-Uniform", "RCL-Sparse", "RCL-Proposed"]
    assert paper.headline("Brain MRI", "ResNet-50")["cer_cut"] is None  # Focal's published CER is 0
    with pytest.raises(ValueError, match="no figures for 'HAM'"):
        paper.published("HAM", "ResNet-50")


def test_ablation_grid_is_the_papers():
    assert paper.METHODS[:4] == ("CE", "WCE", "Focal", "LS") and len(paper.METHODS) == 11
    assert (paper.PROPOSED_ALPHA, paper.PROPOSED_BETA) == paper.ABLATION_CONFIGS["RCL-Proposed"] == (5, 20)


@pytest.mark.parametrize("value, digits, expected", [(0.1234, 1, "12.3%"), (0.0, 1, "0.0%"), (1.0, 0, "100%"),
                                                     (None, 1, "n/a")])
def test_pct(value, digits, expected):
    assert text.pct(value, digits) == expected


def test_numbers_and_labels():
    assert text.num(0.6) == "0.600" and text.num(None) == "n/a"
    assert text.points(-0.034) == "-3.4 pts" and text.signed(0.0123) == "+0.012"
    assert text.count_of(22, 44) == "22 of 44"
    assert text.ci_text(0.15, 0.1, 0.3, text.pct) == "15.0% (95% CI 10.0% – 30.0%)"
    assert text.ci_text(0.5, None, 0.9) == "0.500"
    assert text.penalties(5.0, 20.0) == "α=5 β=20" and text.penalties(0.5, None) == "α=0.5 β=n/a"


def test_tier_comparison_and_missed_malignant():
    taxonomy = preset("brain_mri")  # glioma, meningioma, pituitary malignant; notumor benign
    rows = confusion.tier_comparison({"type_2": 3, "type_1": 1}, {"type_2": 5})
    assert [(r["key"], r["count"], r["reference"]) for r in rows] == \
        [("visual_ambiguity", 0, 0), ("type_1", 1, 0), ("type_2", 3, 5)]
    assert rows[2]["tier"] == text.TIER_LABELS["type_2"] == "Type II (fatal miss)"
    counts = np.full((4, 4), 2)
    benign = taxonomy.classes.index("notumor")
    missed, malignant = confusion.missed_malignant(counts, taxonomy)
    assert (missed, malignant) == (3 * 2, 3 * 8)
    counts[:, benign] = 0
    assert confusion.missed_malignant(counts, taxonomy)[0] == 0


def test_decision_frontier_of_runs(tmp_path):
    runs = [load_run(fake_run(tmp_path, "a")), load_run(fake_run(tmp_path, "b", loss="rcl", seed=1))]
    points = listing.decision_frontier(runs)
    argmax = [p for p in points if p["decision"] == "argmax"]
    assert [p["run_id"] for p in argmax] == ["a", "b"]
    assert argmax[0]["cer"] == pytest.approx(runs[0].metrics["test"]["cer"])
    assert any(p["decision"] == "bayes α=5 β=20" for p in points)


def test_exported_models_lists_folders_with_a_card(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "model.json").write_text("{}")
    (tmp_path / "half").mkdir()
    assert listing.exported_models(tmp_path) == [tmp_path / "good"]


def test_cost_sensitive_reads_the_stored_decision_and_the_registry(tmp_path):
    folder = fake_run(tmp_path, "a", loss="Expected-Risk")
    assert load_run(folder).cost_sensitive  # no stored decision: the loss registry decides, any spelling
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps(metrics | {"decision": {"cost_sensitive_training": False}}))
    assert load_run(folder).cost_sensitive  # an old run's wrong flag is corrected by the registry
    plain = fake_run(tmp_path, "b", loss="ce")
    assert not load_run(plain).cost_sensitive
