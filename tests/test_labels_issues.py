import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rcl.labels.issues import OutOfFold, fold_indices, rank_label_issues, ranking_precision
from rcl.taxonomy import preset

ISIC = preset("isic2018")
# Measured with the call below (deterministic on CPU; docs/LABELS.md): 14 flips of 140 eligible,
# precision@14 = 0.357, precision@7 = 0.714 (5 of the first 7 suspects are flips), 10 of the 14 flips
# among the 82 flagged. The synthetic set's designed look-alikes cap precision@k near 0.6 even for an
# oracle; the floors leave a margin of about one flip.
PRECISION_AT_K_FLOOR = 0.25
PRECISION_AT_HALF_K_FLOOR = 0.5
FLAGGED_RECALL_FLOOR = 0.5


def test_folds_are_stratified_disjoint_and_keep_groups_whole():
    labels = np.repeat(np.arange(3), 40)
    groups = np.repeat(np.arange(60), 2)  # two images per lesion
    folds = fold_indices(labels, groups, 4, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(120))
    for held in folds:
        assert set(groups[held]).isdisjoint(set(np.delete(groups, held)))
        assert np.all(np.bincount(labels[held], minlength=3) > 0)
    with pytest.raises(ValueError, match="folds must be a whole number >= 2, got 1"):
        fold_indices(labels, None, 1, seed=0)


def _fabricated_oof():
    """Confident, mostly right probabilities; 20 benign-labelled samples the model calls MEL."""
    rng = np.random.default_rng(0)
    truth = rng.choice(ISIC.num_classes, 1000, p=[0.2, 0.5, 0.1, 0.05, 0.1, 0.03, 0.02])
    probs = np.full((1000, ISIC.num_classes), 0.02) + np.eye(ISIC.num_classes)[truth] * 0.86
    given = truth.copy()
    flipped = np.flatnonzero(truth == 0)[:20]
    given[flipped] = 1  # MEL labelled NV: a miss in the labels
    ids = np.array([f"s{i}.png" for i in range(1000)])
    noise = {"spec": "miss:0.1", "rule": "", "seed": 0, "eligible": 200, "flipped": 20,
             "samples": [{"id": ids[i], "true": "MEL", "given": "NV"} for i in flipped]}
    return OutOfFold(probs, given, ids, ISIC, "fabricated", noise), set(ids[flipped])


def test_ranking_puts_suspected_misses_first_and_scores_against_the_flips():
    oof, flips = _fabricated_oof()
    result = rank_label_issues(oof)
    top = result["rows"][:20]
    assert {r["id"] for r in top} == flips
    assert all(r["is_miss"] and r["given"] == "NV" and r["suggested"] == "MEL" for r in top)
    assert result["precision"]["precision_at_k"] == 1.0 and result["precision"]["k"] == 20
    assert result["misses"] == 20 and result["flagged"] >= 20
    json.dumps(result)


def test_ranking_precision_counts_hits_in_the_top_k():
    ranked = np.array(["a", "x", "b", "y", "c"])
    p = ranking_precision(ranked, np.array([True, True, True, False, False]), {"a", "b", "c"})
    assert p["precision_at_k"] == pytest.approx(2 / 3) and p["precision_at_half_k"] == 1.0  # top 1 of 3: "a"
    assert p["flagged_precision"] == pytest.approx(2 / 3) and p["flagged_recall"] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_cli_finds_most_injected_misses_on_the_synthetic_set(capsys):
    from rcl.cli import main

    # The default finder (3 folds of cnn4 at 32 px) on 1,000 synthetic images, 6 epochs: ~25 CPU-seconds.
    assert main(["label-issues", "--data", "synthetic", "--label-noise", "miss:0.1", "--limit", "1000",
                 "--epochs", "6", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["noise"]["flipped"] == round(0.1 * result["noise"]["eligible"]) > 10
    assert "ranked by self_confidence" in result["method"]
    p = result["precision"]
    assert p["flagged_recall"] >= FLAGGED_RECALL_FLOOR  # most flips are found
    assert p["precision_at_half_k"] >= PRECISION_AT_HALF_K_FLOOR  # the first suspects are mostly flips
    assert p["precision_at_k"] >= PRECISION_AT_K_FLOOR
    top = result["rows"][: p["k"]]
    assert sum(r["is_miss"] for r in top) >= 0.8 * len(top)


def test_unknown_rank_method_is_refused():
    oof, _ = _fabricated_oof()
    with pytest.raises(ValueError, match="rank method must be one of self_confidence, normalized_margin"):
        rank_label_issues(oof, "margin")


def test_p_malignant_ranks_misses_by_the_malignant_superclass():
    oof, flips = _fabricated_oof()
    probs = oof.probs.copy()
    odd = sorted(flips)[0]
    # NV-labelled, NV at 1%: the least self-confident miss; but P(malignant) 0.89, the other flips' 0.92.
    probs[list(oof.ids).index(odd)] = [0.89, 0.01, 0.0, 0.0, 0.08, 0.01, 0.01]
    oof = replace(oof, probs=probs)
    assert rank_label_issues(oof, "self_confidence")["rows"][0]["id"] == odd
    rows = rank_label_issues(oof, "p_malignant")["rows"]
    assert [r["id"] for r in rows[:20]][-1] == odd and rows[19]["score"] == pytest.approx(0.11)
    assert all(r["is_miss"] for r in rows[:20])


def _csv_with_sites(root, n=150):
    """A CSV layout of ``n`` small images of 3 classes with an extra column, ``site``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = np.array(["a", "b", "m"])[np.arange(n) % 3]
    for i, label in enumerate(labels):
        colour = {"a": (200, 60, 60), "b": (60, 200, 60), "m": (60, 60, 200)}[label]
        pixels = np.clip(rng.normal(colour, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "label": labels,
                  "site": np.where(np.arange(n) % 2, "back", "face")}).to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def test_cli_suspect_share_by_a_metadata_column(tmp_path, capsys):
    from rcl.cli import main

    data = str(_csv_with_sites(tmp_path))
    options = ["label-issues", "--data", data, "--malignant", "m", "--folds", "2", "--epochs", "1", "--max-steps", "2",
               "--image-size", "16", "--model", "small_cnn", "--device", "cpu"]
    assert main([*options, "--by", "SITE", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    by = result["by_group"]
    assert by["by"] == "site" and {r["group"] for r in by["groups"]} == {"back", "face"}
    assert sum(r["n"] for r in by["groups"]) == result["n"] and sum(r["flagged"] for r in by["groups"]) == result["flagged"]
    assert set(by["within_class"]) <= {"a", "b", "m"}

    # A column the data lacks: one line naming those it has, before any fold model trains.
    assert main([*options, "--by", "sex"]) == 2
    captured = capsys.readouterr()
    assert "--by 'sex'" in captured.err and "(columns it has: site)" in captured.err and "fold 1/2" not in captured.err
