"""The Label quality page (AppTest) over fabricated runs on a small CSV dataset with metadata.

The runs are written the way the trainer writes them (config.json, metrics.json from the stored
predictions, predictions.npz), so every figure the page shows can be recomputed here directly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT
from PIL import Image

import rcl

TOY = rcl.Taxonomy.from_malignant(["a", "b", "m"], malignant=["m"], name="toy")
N_VAL, N_TEST = 60, 200
SITES = ["back"] * 90 + ["face"] * 98 + ["palm"] * 12  # palm: too small to estimate
PLANTED = [1, 4, 7, 10, 13, 16]  # test cases stored as "a" that the model calls malignant with 0.9: suspected misses


def app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(ROOT / "app_pages" / "8_Label_quality.py"), default_timeout=120)


def texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader")
                     for e in getattr(at, kind))


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_labels(n: int) -> np.ndarray:
    return np.array([0, 1, 2, 2] * (n // 4))[:n]


test_labels.__test__ = False  # a helper, not a test


def probs_for(predicted: np.ndarray, confident: dict[int, int] | None = None) -> np.ndarray:
    """0.8 on the predicted class; the cases in ``confident`` get 0.9 on the class given."""
    probs = np.full((predicted.size, 3), 0.1, np.float32)
    probs[np.arange(predicted.size), predicted] = 0.8
    for i, c in (confident or {}).items():
        probs[i] = 0.05
        probs[i, c] = 0.9
    return probs


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "toy_data"
    root.mkdir()
    n = N_VAL + N_TEST
    for i in range(n):
        Image.new("RGB", (40, 20), (i % 256, 80, 160)).save(root / f"img{i:03d}.png")
    labels = np.concatenate([test_labels(N_VAL), test_labels(N_TEST)])
    pd.DataFrame({"path": [f"img{i:03d}.png" for i in range(n)], "label": [TOY.classes[c] for c in labels],
                  "site": ["back"] * N_VAL + SITES}).to_csv(root / "data.csv", index=False)
    return root


def write_run(home: Path, name: str, data: Path, miss_rate: float, seed: int, loss: str = "ce",
              noise: str | None = None, planted: bool = False) -> Path:
    """A finished run whose test predictions miss the first ``miss_rate`` of the malignant cases."""
    folder = home / name
    folder.mkdir(parents=True)
    y_val, y_test = test_labels(N_VAL), test_labels(N_TEST)
    predicted = y_test.copy()
    malignant = np.flatnonzero(y_test == 2)
    predicted[malignant[: round(miss_rate * malignant.size)]] = 0
    stored = y_test.copy()
    confident = {}
    if planted:
        stored[PLANTED] = 0  # the stored (given) label says benign ...
        confident = dict.fromkeys(PLANTED, 2)  # ... the model is sure it is malignant
        predicted[PLANTED] = 2
    test_probs = probs_for(predicted, confident)
    ids = [f"img{i:03d}.png" for i in range(N_VAL + N_TEST)]
    np.savez(folder / "predictions.npz", val_probs=probs_for(y_val), val_labels=y_val, val_ids=np.array(ids[:N_VAL]),
             test_probs=test_probs, test_labels=stored, test_ids=np.array(ids[N_VAL:]))
    test = rcl.evaluate(stored, test_probs.argmax(axis=1), TOY).to_dict()
    test["ci"] = rcl.bootstrap_ci(stored, test_probs.argmax(axis=1), TOY, n_resamples=200)
    train = {"loss": loss, "model": "small_cnn", "seed": seed, "data": str(data / "data.csv"), "name": name,
             "label_noise": noise, "alpha": 5.0, "beta": 20.0}
    config = {"train": train, "taxonomy": TOY.to_dict(), "matrix": np.ones((3, 3)).tolist(),
              "dataset": {"name": "toy_csv", "root": str(data)}, "created": f"2026-01-01T00:00:{seed:02d}"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"test": test, "epochs_run": 1}))
    return folder


@pytest.fixture
def study_home(tmp_path, dataset, monkeypatch) -> Path:
    """ce clean (2 seeds), ce miss:0.2 (2 seeds), rcl miss:0.2 (1 seed, the planted label errors)."""
    home = tmp_path / "home"
    write_run(home, "ce-clean-0", dataset, 0.0, 0)
    write_run(home, "ce-clean-1", dataset, 0.1, 1)
    write_run(home, "ce-miss-0", dataset, 0.3, 0, noise="miss:0.2")
    write_run(home, "ce-miss-1", dataset, 0.5, 1, noise="miss:0.2")
    write_run(home, "rcl-miss-0", dataset, 0.2, 0, loss="rcl", noise="miss:0.2", planted=True)
    monkeypatch.setenv("RCL_HOME", str(home))
    return home


def gallery(at) -> list[str]:
    """The gallery's captions in reading order (row by row); AppTest lists them column by column."""
    captions = [m.value for m in at.markdown if " · score " in m.value and not m.value.startswith("**")]
    columns, out = [], 0
    for c in range(6):
        size = len(range(c, len(captions), 6))
        columns.append(captions[out: out + size])
        out += size
    return [columns[n % 6][n // 6] for n in range(len(captions))]


def table(at, column: str, having: str | None = None) -> pd.DataFrame:
    """The one table the page drew that has ``column`` (and ``having``), indexed by ``column``."""
    (found,) = [d.value for d in at.dataframe if {column, having or column} <= set(d.value.columns)]
    return found.set_index(column)


def shown(at, run_id: str):
    at.selectbox(key="run_picker").set_value(run_id)
    return at.run()


def test_no_runs_says_what_to_do():
    at = app().run()
    no_exception(at)
    assert "No finished runs yet" in texts(at)


def test_without_noisy_runs_the_page_says_how_to_make_them(tmp_path, dataset, monkeypatch):
    write_run(tmp_path / "home", "ce-clean-0", dataset, 0.0, 0)
    monkeypatch.setenv("RCL_HOME", str(tmp_path / "home"))
    at = app().run()
    no_exception(at)
    assert "No finished run was trained with label noise yet" in texts(at) and "--label-noise miss:0.1" in texts(at)
    assert not at.get("plotly_chart")


def test_noise_curves_average_the_seeds_per_loss_and_start_from_the_clean_runs(study_home):
    at = app().run()
    no_exception(at)
    runs = {r["id"]: r for r in rcl.run_rows(study_home)}
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = {(t["name"], t["xaxis"]): t for t in figure["data"]}
    assert {name for name, _ in lines} == {"ce · miss", "rcl α=5 β=20 · miss"}
    ce_cer = lines[("ce · miss", "x")]
    assert list(ce_cer["x"]) == [0.0, 0.2]
    clean = np.mean([runs["ce-clean-0"]["cer"], runs["ce-clean-1"]["cer"]])
    noisy = np.mean([runs["ce-miss-0"]["cer"], runs["ce-miss-1"]["cer"]])
    assert list(ce_cer["y"]) == pytest.approx([clean, noisy]) and noisy > clean
    # two seeds at 0.2: the bar spans their range
    assert ce_cer["error_y"]["array"][1] == pytest.approx(max(runs["ce-miss-0"]["cer"], runs["ce-miss-1"]["cer"]) - noisy)
    rcl_f1 = lines[("rcl α=5 β=20 · miss", "x2")]  # rcl has no clean run: its curve is its one noisy point
    assert list(rcl_f1["x"]) == [0.2] and list(rcl_f1["y"]) == pytest.approx([runs["rcl-miss-0"]["f1_macro"]])
    assert rcl_f1["error_y"]["array"][0] == pytest.approx(runs["rcl-miss-0"]["f1_high"] - runs["rcl-miss-0"]["f1_macro"])
    study = at.dataframe[0].value
    assert study["runs"].tolist() == [2, 2, 1] and study["rate"].tolist() == ["0%", "20%", "20%"]
    assert "argmax decision" in texts(at)
    assert at.selectbox(key="labels_group").options == [f"toy_csv · 200 test images · split "
                                                        f"{rcl.split_fingerprint(study_home / 'ce-clean-0')} · 5 runs · "
                                                        "3 with label noise"]


def test_suspects_gallery_puts_the_planted_misses_first_and_exports_them(study_home, monkeypatch):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    saved, original = {}, MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        saved[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = shown(app().run(), "rcl-miss-0")
    no_exception(at)
    captions = gallery(at)
    assert len(captions) == 24 and "**24 labels of 260 flagged**, 6 suspected misses" in texts(at)
    assert all(c.startswith(":red-badge[") and "a → m · score 0.05" in c for c in captions[: len(PLANTED)])
    images = at.get("image")
    assert len(images) == len(captions) + 1  # the gallery, and the review queue's suspect being read
    markdown = [m.value for m in at.markdown]
    first = f"img{N_VAL + PLANTED[0]:03d}.png"
    assert any(f"**{first}**" in m and "suspected miss" in m for m in markdown)  # the queue starts with a miss
    csv = pd.read_csv(io.BytesIO(saved["suspects_rcl-miss-0.csv"]))
    assert list(csv.columns) == ["id", "given", "suggested", "score", "p_malignant", "is_miss"]
    assert set(csv["id"][: len(PLANTED)]) == {f"img{N_VAL + i:03d}.png" for i in PLANTED}
    assert csv["is_miss"][: len(PLANTED)].all() and csv["score"][: len(PLANTED)].tolist() == [0.05] * len(PLANTED)
    assert "Review queue" in texts(at)


def test_a_saved_ranking_is_listed_and_a_broken_one_is_one_line(study_home):
    (study_home / "label_issues").mkdir()
    rows = [{"id": "img061.png", "given": "b", "suggested": "a", "score": 0.2, "p_malignant": 0.1, "is_miss": False},
            {"id": "img063.png", "given": "a", "suggested": "m", "score": 0.4, "p_malignant": 0.7, "is_miss": True}]
    (study_home / "label_issues" / "oof.json").write_text(json.dumps(
        {"source": "out-of-fold probabilities", "method": "cleanlab", "n": 100, "flagged": 2, "misses": 1, "rows": rows}))
    (study_home / "label_issues" / "broken.json").write_text("{")
    at = app().run()
    at.selectbox(key="labels_source").set_value(str(study_home / "label_issues" / "oof.json")).run()
    no_exception(at)
    captions = gallery(at)
    assert captions == [":red-badge[:material/priority_high: miss] a → m · score 0.40", "b → a · score 0.20"]
    assert "**2 labels of 100 flagged**" in texts(at)
    at.selectbox(key="labels_source").set_value(str(study_home / "label_issues" / "broken.json")).run()
    assert len(at.error) == 1 and "broken.json cannot be read as a label-issue result" in at.error[0].value


def test_subgroups_table_shows_the_groups_cis_gaps_and_the_too_small_one(study_home):
    at = shown(app().run(), "ce-miss-1")
    no_exception(at)
    assert at.selectbox(key="labels_by").options == ["site"]
    groups = table(at, "group", having="CER")
    result = rcl.run_subgroups(rcl.load_run(study_home / "ce-miss-1"), "site")
    expected = {g["group"]: g for g in result["groups"]}
    assert set(groups.index) == {"back", "face", "palm"}
    assert groups.loc["palm", "note"] == "12 cases < 30: not estimated" and groups.loc["palm", "CER"] == "not estimated"
    face = expected["face"]["cer"]
    assert groups.loc["face", "CER"] == f"{rcl.pct(face['value'])} (95% CI {rcl.pct(face['low'])} – {rcl.pct(face['high'])})"
    # ce-miss-1 misses the first half of the malignant cases: all 45 of "back", 5 of the 49 of "face"
    assert groups.loc["back", "gap"].startswith("CER +") and groups.loc["face", "gap"].startswith("CER -")


def test_suspect_share_by_group_under_the_subgroups(study_home):
    at = shown(app().run(), "rcl-miss-0")
    no_exception(at)
    shares = table(at, "class", having="flagged share").reset_index()
    expected = rcl.run_suspect_rates(rcl.load_run(study_home / "rcl-miss-0"), "site")
    assert shares.to_dict("records") == rcl.suspect_rate_display(expected)
    overall = shares[shares["class"] == "all"].set_index("group")
    assert overall["labels"].sum() == N_VAL + N_TEST and overall["flagged"].sum() == expected["flagged"] > 0
    assert overall.loc["palm", "flagged share"] == "not estimated"
    assert "Suspect labels by `site`" in texts(at)


def test_clean_vs_noisy_test_side_by_side(study_home):
    at = shown(app().run(), "ce-clean-0")
    at.slider(key="labels_rate").set_value(0.2).run()
    no_exception(at)
    sides = table(at, "metric")
    expected = rcl.illusion_of_accuracy(rcl.load_run(study_home / "ce-clean-0"), "miss:0.2", 0)
    assert expected["clean"]["cer"]["value"] == 0 and expected["noisy"]["cer"]["value"] == 0
    malignant = "malignant cases (CER's denominator)"
    assert sides.loc[malignant, "clean test labels"] == "100"
    assert sides.loc[malignant, "noisy test labels"] == str(100 - expected["noise"]["flipped"]) == "80"
    f1 = expected["noisy"]["f1_macro"]
    assert sides.loc["F1-macro", "noisy test labels"] == f"{f1['value']:.3f} (95% CI {f1['low']:.3f} – {f1['high']:.3f})"
    assert "20 of 100 eligible labels flipped" in texts(at)


def test_cli_subgroups_prints_the_pages_table(study_home, capsys):
    from rcl.cli import main

    assert main(["subgroups", str(study_home / "ce-miss-1"), "--by", "site"]) == 0
    printed = capsys.readouterr().out
    rows = rcl.subgroup_display(rcl.run_subgroups(rcl.load_run(study_home / "ce-miss-1"), "site"))
    for row in rows:
        line = next(line for line in printed.splitlines() if line.startswith(row["group"] + " "))
        assert row["CER"] in line and row["F1-macro"] in line and row["note"] in line
    assert main(["subgroups", str(study_home / "ce-miss-1"), "--by", "sex"]) == 2
    assert "(columns it has: site)" in capsys.readouterr().err
