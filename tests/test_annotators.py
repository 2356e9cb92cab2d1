"""Several annotators: vote parsing, majority with ties to malignant, agreement, soft-target
losses (one-hot = hard, exactly), the expected CER, and a run trained on three readers' columns."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import png_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import rcl
from rcl.cli import main
from rcl.data import load_dataset
from rcl.data.votes import agreement, fleiss_kappa, majority, soft_targets
from rcl.loss_registry import LOSSES, check_soft_targets
from rcl.metrics import evaluate, expected_cer
from rcl.uncertainty import expected_cer_ci

CLASSES = ["mel", "nv", "bcc", "bkl"]  # mel and bcc malignant


def write_csv(folder, rows: list[dict], name: str = "labels.csv"):
    """``rows`` of CSV columns; every ``path`` gets a tiny PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        (folder / row["path"]).write_bytes(png_bytes(16, seed=i))
    pd.DataFrame(rows).to_csv(folder / name, index=False)
    return folder / name


def three_readers(n: int = 40) -> list[dict]:
    """Three readers per image: reader1 the class, reader2 says nv on every third image, reader3
    leaves every fifth blank."""
    return [{"path": f"im{i}.png", "reader1": CLASSES[i % 4], "reader2": CLASSES[i % 4] if i % 3 else "nv",
             "reader3": "" if i % 5 == 0 else CLASSES[i % 4]} for i in range(n)]


def by_id(table, column="label"):
    return dict(zip(table.samples["id"], table.samples[column]))


# -- reading votes --------------------------------------------------------------------------------
def test_reader_columns_missing_votes_and_majority(tmp_path):
    csv = write_csv(tmp_path, [
        {"path": "a.png", "reader1": "mel", "reader2": "nv", "reader3": "mel"},
        {"path": "b.png", "reader1": "nv", "reader2": "", "reader3": "NA"},    # one vote: nv
        {"path": "c.png", "reader1": "mel", "reader2": "nv", "reader3": "-"},  # a tie: malignant wins
        {"path": "d.png", "reader1": "", "reader2": "", "reader3": ""},        # no vote: skipped
        {"path": "e.png", "reader1": "nv", "reader2": "bkl", "reader3": ""},   # a benign tie: lower index
    ])
    table = load_dataset(csv, malignant=["mel"])
    classes = table.taxonomy.classes  # ('bkl', 'mel', 'nv')
    assert {i: classes[k] for i, k in by_id(table).items()} == {"a.png": "mel", "b.png": "nv", "c.png": "mel",
                                                                 "e.png": "bkl"}
    votes = dict(zip(table.samples["id"], table.votes.tolist()))
    assert votes["a.png"] == [0, 2, 1] and votes["b.png"] == [0, 0, 1] and votes["e.png"] == [1, 0, 1]
    assert table.skipped == [("d.png", "no vote in reader1, reader2, reader3")]
    assert table.vote_source == "columns reader1, reader2, reader3"


def test_one_column_with_several_labels_and_named_columns(tmp_path):
    csv = write_csv(tmp_path / "pipe", [{"path": "a.png", "label": "mel|nv|mel"}, {"path": "b.png", "label": "nv"},
                                        {"path": "c.png", "label": "bcc| |bkl"}])
    table = load_dataset(csv, malignant=["mel", "bcc"])
    assert table.votes.sum(axis=1).tolist() == [3, 1, 2]
    assert [table.taxonomy.classes[k] for k in table.labels] == ["mel", "nv", "bcc"]  # bcc|bkl: tie to malignant
    assert table.vote_source == "column label (labels separated by '|')"
    # label_1..label_n are found by name; a plain label column beside them wins unless they are named
    rows = [{"path": "a.png", "label": "mel", "label_1": "mel", "label_2": "mel"},
            {"path": "b.png", "label": "nv", "label_1": "nv", "label_2": "bkl"}]
    csv = write_csv(tmp_path / "both", rows)
    assert load_dataset(csv, malignant=["mel"]).votes is None
    named = load_dataset(csv, malignant=["mel"], label_columns="label_1,LABEL_2")
    assert named.votes.tolist() == [[0, 2, 0], [1, 0, 1]]  # classes bkl, mel, nv
    auto = write_csv(tmp_path / "auto", [{k: v for k, v in r.items() if k != "label"} for r in rows])
    assert load_dataset(auto, malignant=["mel"]).votes.tolist() == [[0, 2, 0], [1, 0, 1]]


@pytest.mark.parametrize("args, message", [
    ([], "column 'reader2' has 'melanomaa', which is not a class of taxonomy"),
    (["--label-columns", "reader1,reader9"], "--label-columns names 'reader9', not a column of it"),
])
def test_bad_votes_are_one_clear_line(tmp_path, capsys, args, message):
    csv = write_csv(tmp_path, [{"path": "a.png", "reader1": "mel", "reader2": "melanomaa"},
                               {"path": "b.png", "reader1": "nv", "reader2": "nv"}])
    assert main(["audit", str(csv), "--preset", "isic2018", "--no-near", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_ties_go_to_the_more_severe_superclass():
    graded = rcl.Taxonomy("graded", ("a", "p", "m", "n"), (0, 1, 2, 0), ("benign", "pre", "malignant"), 2)
    assert majority([[1, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [2, 2, 2, 2], [0, 3, 1, 0]], graded).tolist() \
        == [1, 0, 2, 2, 1]


def test_agreement_and_fleiss_kappa():
    # Fleiss (1971)'s worked example: 10 subjects, 14 raters, 5 categories, kappa 0.210.
    fleiss = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(fleiss) == pytest.approx(0.20993, abs=1e-5)
    # Missing votes: P_i over samples with two votes or more. Here P = (1 + 0 + 1/3) / 3 and
    # p = (4/8, 4/8), so P_e = 1/2 and kappa = (4/9 − 1/2) / (1/2) = −1/9; the one-vote sample counts in p only.
    counts = np.array([[2, 0], [1, 1], [1, 2], [0, 1]])
    assert fleiss_kappa(counts) == pytest.approx(-1 / 9)
    toy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    report = agreement(np.array([[3, 0, 0], [2, 0, 1], [1, 0, 1], [0, 0, 3], [0, 1, 0]]), toy)
    assert report["unanimous_share"] == 0.5 and report["ties"] == 1 and report["ties_to_malignant"] == 1
    assert report["malignant_benign_disagreement"] == 2 and report["majority_benign_with_malignant_vote"] == 1
    assert report["votes_per_sample"] == {"min": 1, "mean": 2.4, "max": 3}


def test_soft_targets_give_way_to_a_changed_label():
    toy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    counts = np.array([[2, 0, 1], [1, 0, 1], [0, 3, 0]])
    # sample 1's tie went to m (majority); a correction to a overrides the readers there
    targets = soft_targets(counts, np.array([0, 0, 1]), toy)
    np.testing.assert_allclose(targets, [[2 / 3, 0, 1 / 3], [1, 0, 0], [0, 1, 0]], rtol=1e-6)


# -- losses on soft targets -----------------------------------------------------------------------
def _loss(name, taxonomy):
    params = {"wce": dict(class_counts=[5, 3, 2]), "rcl": dict(taxonomy=taxonomy, alpha=2, beta=10),
              "expected_risk": dict(taxonomy=taxonomy, alpha=2, beta=10)}.get(name, {})
    return rcl.make_loss(name, **params)


SOFT = sorted(name for name, spec in LOSSES.items() if spec.takes_soft_targets)


@settings(max_examples=40, deadline=None)
@given(logits=arrays(np.float32, st.tuples(st.integers(1, 6), st.just(3)), elements=st.floats(-8, 8, width=32)),
       data=st.data())
def test_one_hot_soft_targets_equal_hard_labels_in_value_and_gradient(logits, data):
    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m"], ["m"])
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=len(logits), max_size=len(logits))))
    for name in SOFT:
        loss = _loss(name, taxonomy)
        results = []
        for targets in (labels, torch.nn.functional.one_hot(labels, 3).float()):
            x = torch.tensor(logits, requires_grad=True)
            value = loss(x, targets)
            value.backward()
            results.append((value.detach(), x.grad))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6, msg=name)


def test_registry_says_which_losses_take_soft_targets(toy_taxonomy):
    soft = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    for name, spec in LOSSES.items():
        loss = _loss(name, toy_taxonomy)
        if spec.takes_soft_targets:
            assert torch.isfinite(loss(torch.zeros(2, 3), soft))
        else:
            with pytest.raises(ValueError, match="not soft targets"):
                loss(torch.zeros(2, 3), soft)
            with pytest.raises(ValueError, match=f"loss '{name}' cannot train on soft targets.*--targets majority"):
                check_soft_targets(name)
    assert not LOSSES["focal"].takes_soft_targets
    with pytest.raises(ValueError, match="sum to 1"):
        rcl.make_loss("ce")(torch.zeros(2, 3), torch.tensor([[0.5, 0.0, 0.2], [0.0, 1.0, 0.0]]))


def test_rcl_weight_is_the_expected_severity_by_hand(toy_taxonomy):
    # M = [[1, 1, 2], [1, 1, 2], [10, 10, 1]]; one image, logits favour a; readers: a, m, m.
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    q = torch.tensor([[1 / 3, 0.0, 2 / 3]])
    p = [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2), 1 / (math.exp(2) + 2)]
    soft_ce = -(1 / 3 * math.log(p[0]) + 2 / 3 * math.log(p[2]))
    severity = 1 / 3 * 1 + 2 / 3 * 10  # (q @ M)[a]: a third of a correct answer, two thirds of a miss
    loss = _loss("rcl", toy_taxonomy)
    assert loss(logits, q).item() == pytest.approx(severity * soft_ce, rel=1e-6)
    assert severity * soft_ce == pytest.approx(11.0104, rel=1e-4)  # 7 × 1.57291, worked through on paper
    # expected risk: Σ_j p_j (q @ M)_j, with (q @ M) = (7, 7, 4/3)
    expected_row = [1 / 3 + 20 / 3, 1 / 3 + 20 / 3, 2 / 3 + 2 / 3]
    weight = sum(pj * mj for pj, mj in zip(p, expected_row))
    assert _loss("expected_risk", toy_taxonomy)(logits, q).item() == pytest.approx(weight * soft_ce, rel=1e-6)
    # WCE: the expected class weight q · w, w ∝ 1 / (5, 3, 2) with mean 1
    w = 1 / np.array([5, 3, 2])
    w = w / w.mean()
    wce = _loss("wce", toy_taxonomy)(logits, q).item()
    assert wce == pytest.approx(soft_ce, rel=1e-6)  # one sample: the weight cancels in the weighted mean
    pair = _loss("wce", toy_taxonomy)(torch.cat([logits, logits]), torch.cat([q, torch.tensor([[0.0, 1.0, 0.0]])]))
    ce_b = -math.log(p[1])
    wq = w[0] / 3 + 2 * w[2] / 3
    assert pair.item() == pytest.approx((wq * soft_ce + w[1] * ce_b) / (wq + w[1]), rel=1e-5)


# -- the expected CER -----------------------------------------------------------------------------
def test_expected_cer_by_hand(toy_taxonomy):
    votes = np.array([[2, 0, 1], [0, 0, 3], [1, 1, 1], [3, 0, 0]])
    predicted = np.array([0, 2, 1, 2])
    # malignant weight 1/3 + 1 + 1/3 + 0 = 5/3; under-called: case 0 (1/3), case 2 (1/3)
    assert expected_cer(votes, predicted, toy_taxonomy) == pytest.approx((2 / 3) / (5 / 3))
    assert evaluate(majority(votes, toy_taxonomy), predicted, toy_taxonomy).cer == 0.5  # cases 1, 2 malignant
    ci = expected_cer_ci(votes, predicted, toy_taxonomy, seed=0)
    assert ci["value"] == pytest.approx(0.4) and ci["low"] <= 0.4 <= ci["high"]
    assert ci["expected_malignant"] == pytest.approx(5 / 3, abs=1e-4)
    assert expected_cer(np.array([[1, 1, 0]]), [0], toy_taxonomy) is None


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_expected_cer_with_one_vote_per_case_is_the_cer(data):
    taxonomy = rcl.Taxonomy.from_malignant(["a", "b", "m", "n"], ["m", "n"])
    n = data.draw(st.integers(1, 30))
    truth = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    predicted = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    unanimous = np.eye(4, dtype=int)[truth] * data.draw(st.integers(1, 5))
    assert expected_cer(unanimous, predicted, taxonomy) == evaluate(truth, predicted, taxonomy).cer


# -- a run on three readers' columns --------------------------------------------------------------
@pytest.mark.slow
def test_a_run_trains_on_three_readers_and_records_it(tmp_path, capsys):
    csv = write_csv(tmp_path / "data", three_readers(48))
    base = ["train", "--data", str(csv), "--malignant", "mel,bcc", "--model", "small_cnn", "--epochs", "1",
            "--max-steps", "2", "--image-size", "32", "--batch-size", "8", "--device", "cpu"]
    # focal cannot take the votes: refused in one line before any image is decoded
    assert main([*base, "--loss", "focal", "--out", str(tmp_path / "focal")]) == 2
    err = capsys.readouterr().err.strip()
    assert "loss 'focal' cannot train on soft targets" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "focal").exists()

    out = tmp_path / "run"
    assert main([*base, "--loss", "rcl", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["targets"] == "soft"
    annotators = config["dataset"]["annotators"]
    # 48 images: reader2 says nv on 16 (12 of them on a non-nv image), reader3 is blank on 10
    assert annotators["votes"] == 48 * 3 - 10 and annotators["source"] == "columns reader1, reader2, reader3"
    assert annotators["targets"] == "soft" and annotators["relabelled"] == 0
    assert annotators["unanimous_share"] == pytest.approx(1 - 12 / 48, abs=1e-4)
    assert annotators["fleiss_kappa"] is not None and 0 < annotators["fleiss_kappa"] < 1
    metrics = json.loads((out / "metrics.json").read_text())
    with np.load(out / "predictions.npz") as stored:
        votes, labels, logits = stored["test_votes"], stored["test_labels"], stored["test_logits"]
    taxonomy = rcl.Taxonomy.from_dict(config["taxonomy"])
    argmax = metrics["annotators"]["argmax"]
    assert argmax["value"] == pytest.approx(expected_cer(votes, logits.argmax(axis=1), taxonomy))
    assert f"{argmax['expected_malignant']:.1f} malignant cases missed) with argmax" in printed
    assert metrics["test"]["n"] == len(labels) and (labels == majority(votes, taxonomy)).all()


def test_loader_yields_soft_targets_and_majority_mode_does_not(tmp_path):
    from rcl.config import TrainConfig
    from rcl.engine import load_run_data, make_loader

    csv = write_csv(tmp_path / "data", three_readers(24))
    config = TrainConfig(data=str(csv), malignant=["mel", "bcc"], model="small_cnn", image_size=32, batch_size=4,
                         device="cpu").check()
    data = load_run_data(config)
    _, targets = next(iter(make_loader(data, "train", config, torch.device("cpu"))))
    assert targets.shape == (4, 4) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    _, labels = next(iter(make_loader(data, "val", config, torch.device("cpu"))))
    assert labels.dtype == torch.int64
    config.targets = "majority"
    majority_data = load_run_data(config)
    assert majority_data.targets is None and majority_data.info["annotators"]["targets"] == "majority"
    assert (majority_data.votes == data.votes).all()


def test_injected_flips_override_the_votes_they_contradict(tmp_path):
    from rcl.config import TrainConfig
    from rcl.engine import load_run_data

    csv = write_csv(tmp_path / "data", three_readers(40))
    config = TrainConfig(data=str(csv), malignant=["mel", "bcc"], model="small_cnn", image_size=32,
                         label_noise="miss:0.5", device="cpu").check()
    data = load_run_data(config)
    flipped = np.isin(data.ids, [f["id"] for f in data.label_noise["samples"]])
    assert flipped.sum() == data.label_noise["flipped"] > 0
    assert data.info["annotators"]["relabelled"] == flipped.sum()
    np.testing.assert_array_equal(data.targets[flipped], np.eye(4)[data.labels[flipped]])
    np.testing.assert_allclose(data.targets[~flipped], data.votes[~flipped] / data.votes[~flipped].sum(1, keepdims=True),
                               rtol=1e-6)


def test_audit_reports_agreement(tmp_path, capsys):
    csv = write_csv(tmp_path, three_readers(20))
    assert main(["audit", str(csv), "--malignant", "mel,bcc", "--no-near", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["annotators"]
    assert report["samples"] == 20 and report["unanimous_share"] == pytest.approx(1 - 6 / 20)
    assert main(["audit", str(csv), "--malignant", "mel,bcc", "--no-near"]) == 0
    assert "Fleiss' kappa" in capsys.readouterr().out


def test_a_sweep_still_finds_a_finished_run_saved_before_these_fields(tmp_path):
    from helpers import write_run

    from rcl import grid
    from rcl.config import TrainConfig

    [trial] = grid.plan(grid.grid_configs(TrainConfig(epochs=1), grid.custom_methods(["ce"]), seeds=[0]), tmp_path)
    write_run(trial.run_dir)
    older = {k: v for k, v in trial.config.to_dict().items() if k not in ("targets", "label_columns")}
    (trial.run_dir / "config.json").write_text(json.dumps({"train": older}))
    assert grid.split_finished([trial]) == ([], [trial])
