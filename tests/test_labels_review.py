"""The review queue: verdicts kept beside the dataset, second readers, and training on reviewed labels."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcl.config import TrainConfig
from rcl.errors import DataWarning
from rcl.labels.review import (
    apply_label_corrections,
    corrections,
    current_labels,
    new_verdict,
    parse_reviews,
    read_issues,
    read_reviews,
    record_verdict,
    review_queue,
    review_summary,
)
from rcl.taxonomy import preset

ISIC = preset("isic2018")  # MEL, NV, BCC, AKIEC, BKL, DF, VASC; malignant: MEL, BCC, AKIEC
IDS = {"MEL/a.png": "MEL", "NV/b.png": "NV", "NV/c.png": "NV", "BKL/d.png": "BKL"}
TINY = ["--limit", "120", "--epochs", "1", "--max-steps", "2", "--image-size", "32", "--model", "small_cnn",
        "--device", "cpu"]


def record(path, sample_id, verdict, reviewer="Dr A", **details):
    return record_verdict(path, sample_id, verdict, reviewer=reviewer, given=IDS[sample_id], taxonomy=ISIC, ids=IDS,
                          **details)


def test_round_trip_keeps_every_field_in_file_order(tmp_path):
    path = tmp_path / "reviews.jsonl"
    written = [record(path, "MEL/a.png", "correct", label="nv", reason="  regular   network "),
               record(path, "NV/b.png", "keep"),
               record(path, "NV/c.png", "unsure", reviewer="  Dr   B ")]
    assert read_reviews(path) == written
    assert len(path.read_text().splitlines()) == 3
    first = written[0]
    assert (first["given"], first["label"], first["round"], first["reason"]) == ("MEL", "NV", "first", "regular network")
    assert written[2]["reviewer"] == "Dr B"
    assert first["time"].endswith("+00:00")  # UTC
    assert corrections(written) == [first]
    assert current_labels(written) == {"MEL/a.png": "NV", "NV/b.png": "NV"}


def test_a_second_readers_overrule_wins_and_a_confirm_keeps_the_correction(tmp_path):
    path = tmp_path / "reviews.jsonl"
    record(path, "MEL/a.png", "correct", label="NV")
    overrule = record(path, "MEL/a.png", "keep", reviewer="Dr B", second=True)
    assert overrule["round"] == "overrule"
    history = read_reviews(path)
    assert corrections(history) == []
    assert current_labels(history) == {"MEL/a.png": "MEL"}
    record(path, "BKL/d.png", "correct", label="MEL")
    confirm = record(path, "BKL/d.png", "correct", reviewer="Dr C", label="MEL", second=True)
    assert confirm["round"] == "confirm"
    assert [(c["id"], c["label"], c["reviewer"]) for c in corrections(read_reviews(path))] == [("BKL/d.png", "MEL", "Dr C")]
    # a first reader cannot undo a second reading; the second reader's verdict counts whatever the order
    with pytest.raises(ValueError, match="^second: sample 'MEL/a.png' was already read a second time"):
        record(path, "MEL/a.png", "correct", label="BCC")
    late_first = {**overrule, "round": "first", "verdict": "correct", "label": "BCC"}
    assert current_labels([overrule, late_first]) == {"MEL/a.png": "MEL"}


def test_unsure_changes_nothing_until_a_second_reader_decides(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [{"id": i, "given": g, "suggested": "MEL", "score": 0.1, "p_malignant": 0.8, "is_miss": g != "MEL"}
            for i, g in IDS.items()]
    record(path, "NV/c.png", "unsure")
    record(path, "NV/b.png", "keep")
    history = read_reviews(path)
    assert corrections(history) == [] and current_labels(history) == {"NV/b.png": "NV"}
    assert review_summary(history) == {"verdicts": 2, "samples": 2, "kept": 1, "corrected": 0, "unsure": 1,
                                       "second_read": 0}
    assert [r["id"] for r in review_queue(rows, history)] == ["BKL/d.png", "MEL/a.png"]  # misses first
    assert [r["id"] for r in review_queue(rows, history, second=True)] == ["NV/c.png", "NV/b.png"]  # unsure first
    with pytest.raises(ValueError, match="^verdict: a second reader decides"):
        record(path, "NV/c.png", "unsure", reviewer="Dr B", second=True)
    decided = record(path, "NV/c.png", "correct", reviewer="Dr B", label="MEL", second=True)
    assert decided["round"] == "overrule"  # an unsure is always overruled: its question is answered
    assert [c["id"] for c in corrections(read_reviews(path))] == ["NV/c.png"]


@pytest.mark.parametrize("change, message", [
    ({"verdict": "maybe"}, "verdict: unknown verdict 'maybe'; choose one of: keep, correct, unsure"),
    ({"verdict": "maybe", "sample_id": "NV/zz.png"}, "verdict: unknown verdict 'maybe'; choose one of: keep, correct, unsure"),
    ({"reviewer": "  "}, "reviewer: give the reviewer's name (it is stored with the verdict)"),
    ({"sample_id": "NV/zz.png"}, "sample id: 'NV/zz.png' is not a sample of the dataset"),
    ({"sample_id": " "}, "sample id: give the id of the sample reviewed (its path in the dataset)"),
    ({"label": "carcinoma"}, "label: 'carcinoma' is not a class of the dataset (MEL, NV, BCC, AKIEC, BKL, DF, VASC)"),
    ({"label": None}, "label: a 'correct' verdict needs the right class (--label CLASS)"),
    ({"label": "MEL"}, "label: 'MEL' is the given label; the verdict for a right label is 'keep'"),
    ({"verdict": "keep"}, "label: only a 'correct' verdict names a class, not 'keep'"),
    ({"given": "tumour"}, "given: 'tumour' is not a class of the dataset (MEL, NV, BCC, AKIEC, BKL, DF, VASC)"),
    ({"second": True}, "second: sample 'MEL/a.png' has no first verdict to confirm or overrule"),
])
def test_bad_input_is_one_line_naming_the_argument(change, message):
    args = {"sample_id": "MEL/a.png", "verdict": "correct", "reviewer": "Dr A", "given": "MEL", "label": "NV",
            "second": False, **change}
    with pytest.raises(ValueError) as caught:
        new_verdict([], args.pop("sample_id"), args.pop("verdict"), taxonomy=ISIC, ids=IDS, **args)
    assert str(caught.value) == message


def test_a_second_reader_is_another_person(tmp_path):
    path = tmp_path / "reviews.jsonl"
    record(path, "NV/b.png", "keep", reviewer="Dr A")
    with pytest.raises(ValueError, match=r"^reviewer: a second reader must be someone other than the first reader \(Dr A\)$"):
        record(path, "NV/b.png", "correct", reviewer="dr a", label="MEL", second=True)


def test_a_torn_last_line_is_skipped_and_closed_before_the_next_append(tmp_path):
    path = tmp_path / "reviews.jsonl"
    kept = record(path, "NV/b.png", "keep")
    with open(path, "a") as handle:
        handle.write('{"id": "NV/c.png", "giv')  # a crash mid-append
    with pytest.warns(DataWarning, match="last line is incomplete"):
        assert read_reviews(path) == [kept]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        again = record(path, "NV/c.png", "unsure")
    lines = path.read_text().split("\n")
    assert lines[1] == '{"id": "NV/c.png", "giv' and json.loads(lines[2]) == again
    with pytest.raises(ValueError, match=r"reviews\.jsonl line 2: not a JSON object"):
        read_reviews(path)  # the torn line is no longer last: a damaged file is refused, naming the line


ROWS = st.lists(st.fixed_dictionaries({"id": st.sampled_from([f"s{i}" for i in range(12)]), "is_miss": st.booleans()}),
                unique_by=lambda r: r["id"], max_size=12)


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, reviewed=st.sets(st.sampled_from([f"s{i}" for i in range(12)])))
def test_queue_lists_exactly_the_unreviewed_misses_first_in_ranking_order(rows, reviewed):
    history = [{"id": i, "given": "NV", "verdict": "keep", "label": None, "reviewer": "A", "time": "t", "reason": "",
                "round": "first"} for i in sorted(reviewed)]
    queue = review_queue(rows, history)
    todo = [r for r in rows if r["id"] not in reviewed]
    assert [r["id"] for r in queue] == [r["id"] for r in todo if r["is_miss"]] + [r["id"] for r in todo if not r["is_miss"]]


def test_corrections_apply_in_every_split_and_say_what_they_did(tmp_path):
    path = tmp_path / "reviews.jsonl"
    record(path, "MEL/a.png", "correct", label="NV", reason="benign on histology")
    record(path, "NV/b.png", "correct", label="BCC")
    record(path, "NV/c.png", "unsure")
    ids = np.array(["MEL/a.png", "NV/b.png", "NV/x.png"])
    labels = np.array([ISIC.index("MEL"), ISIC.index("BCC"), ISIC.index("NV")])  # b already BCC in this copy
    fixed, done = apply_label_corrections(labels, ids, path, ISIC)
    assert fixed.tolist() == [ISIC.index("NV"), ISIC.index("BCC"), ISIC.index("NV")]
    assert [(a["id"], a["from"], a["to"], a["reviewer"], a["reason"]) for a in done["applied"]] == [
        ("MEL/a.png", "MEL", "NV", "Dr A", "benign on histology")]
    assert [a["id"] for a in done["already"]] == ["NV/b.png"]
    assert done["not_found"] == []
    assert done["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert done["waiting_second_reader"] == 1
    _, none_found = apply_label_corrections(labels[2:], ids[2:], path, ISIC)
    assert none_found["not_found"] == ["MEL/a.png", "NV/b.png"] and none_found["applied"] == []
    assert apply_label_corrections(labels, ids, None, ISIC)[1] is None


def test_the_config_checks_the_corrections_file(tmp_path, monkeypatch, capsys):
    from rcl.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="^label_corrections: file 'nope.jsonl' does not exist"):
        TrainConfig(label_corrections="nope.jsonl", model="small_cnn", image_size=32).check()
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 1: not a review verdict \(missing given, verdict"):
        TrainConfig(label_corrections="bad.jsonl", model="small_cnn", image_size=32).check()
    record(tmp_path / "ok.jsonl", "NV/b.png", "keep")
    config = TrainConfig(label_corrections="ok.jsonl", model="small_cnn", image_size=32).check()
    assert config.label_corrections == str(tmp_path / "ok.jsonl")  # absolute: a background job runs elsewhere
    assert main(["train", "--label-corrections", "nope.jsonl"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "rcl train: error: label_corrections: file 'nope.jsonl' does not exist (a review file written by rcl review "
        "set or the Label quality page)"]


def test_read_issues_takes_the_finders_json(tmp_path):
    rows = [{"id": "NV/b.png", "given": "NV", "suggested": "MEL", "score": 0.02, "p_malignant": 0.9, "is_miss": True}]
    (tmp_path / "issues.json").write_text(json.dumps({"source": "x", "rows": rows}))
    assert read_issues(tmp_path / "issues.json") == rows
    (tmp_path / "other.json").write_text(json.dumps({"rows": [{"id": 1}]}))
    with pytest.raises(ValueError, match="^issues: .* is not a ranking of rcl label-issues --json"):
        read_issues(tmp_path / "other.json")


def test_parse_refuses_a_correct_verdict_without_its_class():
    line = json.dumps({"id": "a", "given": "NV", "verdict": "correct", "label": None, "reviewer": "A", "time": "t",
                       "reason": "", "round": "first"})
    with pytest.raises(ValueError, match="^r line 1: a 'correct' verdict, and only it, names a label$"):
        parse_reviews(line + "\n", "r")


# -- through the dataset, the CLI, the engine and the app ------------------------------------------
def _test_sample(limit=120):
    """A sample of the tiny run's test split, and the run data without corrections."""
    from rcl.engine import load_run_data

    data = load_run_data(TrainConfig(limit=limit, image_size=32, model="small_cnn", device="cpu"))
    return data, str(data.ids[data.splits["test"][0]])


def test_cli_review_set_list_show(tmp_path, capsys):
    from rcl.cli import main
    from rcl.labels.review import review_target

    target = review_target("synthetic")
    assert target.path.parent == tmp_path / "rcl_home"  # the synthetic set's folder is a cache: not there
    ids = sorted(target.labels)[:3]
    rows = [{"id": i, "given": target.labels[i], "suggested": "MEL" if target.labels[i] != "MEL" else "NV",
             "score": 0.1, "p_malignant": 0.5, "is_miss": target.labels[i] != "MEL"} for i in ids]
    (tmp_path / "issues.json").write_text(json.dumps({"rows": rows}))
    assert main(["review", "set", ids[0], "--verdict", "correct", "--label", rows[0]["suggested"],
                 "--reviewer", "Dr A", "--reason", "seen twice"]) == 0
    assert main(["review", "list", "--issues", str(tmp_path / "issues.json"), "--json"]) == 0
    out = capsys.readouterr().out
    assert [r["id"] for r in json.loads(out[out.index("{"):])["queue"]] == ids[1:]
    assert main(["review", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(c["id"], c["label"]) for c in shown["corrections"]] == [(ids[0], rows[0]["suggested"])]
    assert main(["review", "set", ids[1], "--verdict", "keep", "--reviewer", "Dr A", "--second"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"rcl review: error: second: sample {ids[1]!r} has no first verdict to confirm or overrule")
    assert main(["review", "list"]) == 2


def test_the_engine_applies_corrections_before_noise_in_every_split(tmp_path):
    from rcl.engine import load_run_data

    clean, sample = _test_sample()
    index = int(np.flatnonzero(clean.ids == sample)[0])
    given = ISIC.classes[clean.labels[index]]
    new = "NV" if given != "NV" else "MEL"
    path = tmp_path / "reviews.jsonl"
    record_verdict(path, sample, "correct", reviewer="Dr A", given=given, taxonomy=ISIC, label=new)
    config = TrainConfig(limit=120, image_size=32, model="small_cnn", device="cpu", label_corrections=str(path))
    reviewed = load_run_data(config)
    assert np.flatnonzero(reviewed.labels != clean.labels).tolist() == [index]  # a test sample: every split
    assert ISIC.classes[reviewed.labels[index]] == new
    assert {k: reviewed.splits[k].tolist() for k in reviewed.splits} == {k: clean.splits[k].tolist() for k in clean.splits}
    assert reviewed.info["label_corrections"]["applied"] == 1
    noisy = load_run_data(TrainConfig(**{**config.to_dict(), "label_noise": "symmetric:0.2"}))
    assert ISIC.classes[noisy.labels[index]] == new  # the noise flips train labels only, after the review
    assert {s["true"] for s in noisy.label_noise["samples"]} <= set(ISIC.classes)


@pytest.mark.slow
def test_a_verdict_saved_in_the_app_changes_the_labels_the_next_run_trains_on(tmp_path):
    """The review round trip: a click in the widget → the review file → rcl train --label-corrections."""
    from streamlit.testing.v1 import AppTest

    from rcl.cli import main

    clean, sample = _test_sample()
    given = ISIC.classes[clean.labels[int(np.flatnonzero(clean.ids == sample)[0])]]
    suggested = "MEL" if given != "MEL" else "NV"
    rows = [{"id": sample, "given": given, "suggested": suggested, "score": 0.03, "p_malignant": 0.9,
             "is_miss": suggested == "MEL"}]

    def page(rows):
        from ui.review import review_queue_panel

        review_queue_panel("synthetic", rows)

    at = AppTest.from_function(page, args=(rows,), default_timeout=60).run()
    assert not at.exception
    assert any(sample in m.value for m in at.markdown)
    at.button(key="review_correct").click().run()  # nobody named: nothing is saved, and the page says why
    assert [e.value for e in at.error] == ["verdict not saved: reviewer: give the reviewer's name (it is stored "
                                           "with the verdict)"]
    at.text_input(key="review_reviewer").input("Dr A")
    at.text_input(key=f"review_reason_{sample}").input("clearly the other class")
    at.button(key="review_correct").click().run()
    assert not at.exception and not at.error
    assert "Nothing left to read here." in [s.value for s in at.success]
    at.toggle(key="review_second").set_value(True).run()  # a second reader confirms
    assert any("first reader **Dr A**: correct → " + suggested in m.value for m in at.markdown)
    at.text_input(key="review_reviewer").input("Dr B")
    at.button(key="review_confirm").click().run()
    assert not at.exception and not at.error

    from rcl.labels.review import review_target

    reviews = review_target("synthetic").path
    assert [(r["id"], r["label"], r["reviewer"], r["round"]) for r in read_reviews(reviews)] == [
        (sample, suggested, "Dr A", "first"), (sample, suggested, "Dr B", "confirm")]
    out = tmp_path / "run"
    assert main(["train", *TINY, "--label-corrections", str(reviews), "--out", str(out)]) == 0
    used = json.loads((out / "label_corrections.json").read_text())
    assert used["file"] == str(reviews) and used["sha256"] == hashlib.sha256(reviews.read_bytes()).hexdigest()
    assert [(a["id"], a["from"], a["to"], a["reviewer"], a["round"]) for a in used["applied"]] == [
        (sample, given, suggested, "Dr B", "confirm")]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["label_corrections"] == str(reviews)
    assert config["dataset"]["label_corrections"]["sha256"] == used["sha256"]
    with np.load(out / "predictions.npz") as stored:
        position = int(np.flatnonzero(stored["test_ids"] == sample)[0])
        assert ISIC.classes[int(stored["test_labels"][position])] == suggested


def test_the_train_page_trains_on_the_datasets_reviewed_labels(monkeypatch):
    from helpers import ROOT
    from streamlit.testing.v1 import AppTest

    from rcl import jobs
    from rcl.labels.review import review_target

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    at = AppTest.from_file(str(ROOT / "app_pages" / "2_Train.py"), default_timeout=90).run()
    at.checkbox(key="train_reviewed").check()
    at.button[0].click().run()  # Launch, before anyone reviewed anything
    assert any("label_corrections: file" in e.value and "does not exist" in e.value for e in at.error)
    assert jobs.JobStore().list() == []
    target = review_target("synthetic")
    sample = sorted(target.labels)[0]
    record_verdict(target.path, sample, "keep", reviewer="Dr A", given=target.labels[sample], taxonomy=ISIC)
    at.button[0].click().run()
    assert not at.exception
    [job] = jobs.JobStore().list()
    assert job.config["label_corrections"] == str(target.path)


def test_a_run_resumed_after_the_review_file_changed_starts_again(tmp_path):
    from rcl.train import _restart_if_reviews_changed

    (tmp_path / "last.pt").write_bytes(b"state")
    (tmp_path / "label_corrections.json").write_text(json.dumps({"sha256": "aaa"}))
    _restart_if_reviews_changed(tmp_path, {"file": "r.jsonl", "sha256": "aaa"})
    assert (tmp_path / "last.pt").is_file()  # same verdicts: resume
    with pytest.warns(DataWarning, match="r.jsonl changed since this run started: training starts again"):
        _restart_if_reviews_changed(tmp_path, {"file": "r.jsonl", "sha256": "bbb"})
    assert not (tmp_path / "last.pt").exists()
