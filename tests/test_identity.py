"""One identity per concept: any spelling of a loss, and the matrix a user set, travel end to end.

The must-show of the identity issue: every accepted spelling of every cost-carrying loss, through
``rcl train``, a config file and the Train page, gives ``cost_sensitive_training: true`` and the
tuned default decision in ``metrics.json``; the Train page submits the α/β/matrix the user set.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import numpy as np
import pytest
from helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st

from rcl.cli import main
from rcl.cli.training import add_train_options, config_from_args
from rcl.config import TrainConfig
from rcl.loss_registry import LOSSES, canonical_loss, carries_costs, loss_spec
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, SeverityMatrix
from rcl.taxonomy import Taxonomy, preset

COSTLY = [spec for spec in LOSSES.values() if spec.carries_costs]


def spellings() -> list[str]:
    """Every registered name and alias of the cost-carrying losses, in rotating case and separator
    forms, plus the spellings a user tried in the issue."""
    forms = (str, str.upper, lambda s: s.replace("_", "-"), lambda s: s.title().replace("_", "-"))
    keys = [key for spec in COSTLY for key in (spec.name, *spec.aliases)]
    out = [forms[i % len(forms)](key) for i, key in enumerate(keys)]
    return list(dict.fromkeys([*out, "expected-risk", "Expected_Risk", "expected_risk", "RCL", "rcl"]))


TINY = ["--data", "synthetic", "--epochs", "1", "--image-size", "32", "--limit", "100", "--max-steps", "1",
        "--batch-size", "16", "--device", "cpu", "--patience", "1"]


def assert_tuned(metrics: dict) -> None:
    decision = metrics["decision"]
    assert decision["cost_sensitive_training"] is True
    assert decision["rule"] == "bayes (scale tuned on validation)" and "target_val_cer" in decision


# --- the registry --------------------------------------------------------------------------------


@given(st.sampled_from([(spec.name, key) for spec in LOSSES.values() for key in (spec.name, *spec.aliases)]),
       st.lists(st.sampled_from(["lower", "upper", "title", "hyphen", "pad"]), max_size=3))
def test_any_case_or_separator_of_a_name_or_alias_is_that_loss(pair, changes):
    canonical, spelling = pair
    for change in changes:
        spelling = {"lower": str.lower, "upper": str.upper, "title": str.title, "pad": lambda s: f" {s} ",
                    "hyphen": lambda s: s.replace("_", "-")}[change](spelling)
    assert canonical_loss(spelling) == canonical
    assert carries_costs(spelling) == LOSSES[canonical].carries_costs


@pytest.mark.parametrize("name", ["dice", "rcl2", "", "expected risk!", 3])
def test_unknown_spelling_names_the_choices(name):
    with pytest.raises(ValueError, match="unknown loss .*choose one of: ce, wce, focal, label_smoothing, rcl"):
        loss_spec(name)


def test_config_stores_the_canonical_name_and_refuses_unknown_at_construction():
    assert TrainConfig(loss="Expected-Risk").loss == "expected_risk"
    assert TrainConfig.from_dict({"loss": "RCL"}).to_dict()["loss"] == "rcl"
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        TrainConfig(loss="dice")


def test_registry_config_and_posthoc_import_no_torch():
    import subprocess
    import sys

    code = "import sys, rcl.loss_registry, rcl.config, rcl.posthoc; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


# --- one way from a matrix to a config -------------------------------------------------------------


def test_from_matrix_sliders_travel_as_alpha_beta():
    matrix = SeverityMatrix.from_penalties(preset("isic2018"), 3.0, 12.0)
    config = TrainConfig.from_matrix(matrix, loss="rcl", epochs=2)
    assert (config.alpha, config.beta, config.matrix, config.taxonomy) == (3.0, 12.0, None, None)
    assert config.epochs == 2


def test_from_matrix_edited_cells_travel_with_their_classes():
    matrix = SeverityMatrix.from_penalties(preset("isic2018"), 3.0, 12.0).with_cell("MEL", "NV", 40.0)
    config = TrainConfig.from_matrix(matrix, loss="expected-risk")
    assert config.loss == "expected_risk" and Taxonomy.from_dict(config.taxonomy) == preset("isic2018")
    assert np.array_equal(config.matrix, matrix.values) and config.matrix[preset("isic2018").index("MEL")][
        preset("isic2018").index("NV")] == 40.0


def test_from_matrix_refuses_an_edited_matrix_of_other_classes():
    brain = SeverityMatrix.from_penalties(preset("brain_mri"), 5, 20).with_cell(0, 1, 7.0)
    with pytest.raises(ValueError, match="the severity matrix is for classes .* the data's taxonomy"):
        TrainConfig.from_matrix(brain, data="synthetic")


def test_from_matrix_without_sliders_uses_the_papers_constants():
    values = SeverityMatrix.from_penalties(preset("isic2018")).values
    config = TrainConfig.from_matrix(SeverityMatrix(preset("isic2018"), values))
    assert (config.alpha, config.beta) == (PROPOSED_ALPHA, PROPOSED_BETA)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_options(parser)
    return parser.parse_args(argv)


def test_every_cli_field_of_the_config_has_an_option_and_reaches_the_config(tmp_path):
    cli_fields = [f.name for f in fields(TrainConfig) if f.metadata.get("cli")]
    args = parse([])
    assert set(cli_fields) <= set(vars(args))
    config = config_from_args(parse(["--loss", "Expected-Risk", "--alpha", "2", "--beta", "9", "--epochs", "3",
                                     "--no-amp", "--keep-duplicates", "--val-fraction", "0.2"]))
    assert (config.loss, config.alpha, config.beta, config.epochs, config.amp, config.drop_duplicates,
            config.val_fraction) == ("expected_risk", 2.0, 9.0, 3, False, False, 0.2)


def test_malignant_flag_becomes_a_list_and_a_taxonomy(tmp_path):
    from PIL import Image

    for cls in ("benign", "malignant"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    config = config_from_args(parse(["--data", str(tmp_path), "--malignant", "malignant"]))
    assert config.malignant == ["malignant"] and config.resolved_taxonomy() is None
    from rcl.data import load_dataset

    table = load_dataset(config.data, malignant=config.malignant)
    assert table.taxonomy.malignant == ("malignant",) or list(table.taxonomy.malignant) == ["malignant"]


# --- must show: every spelling, every channel, a tuned default decision ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("spelling", spellings())
def test_cli_spelling_trains_cost_sensitive(spelling, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--loss", spelling, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["loss"] == canonical_loss(spelling)
    assert_tuned(json.loads((out / "metrics.json").read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("spelling", spellings())
def test_config_file_spelling_trains_cost_sensitive(spelling, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "synthetic", "loss": spelling, "epochs": 1, "image_size": 32, "limit": 100,
                                "max_steps": 1, "batch_size": 16, "device": "cpu"}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 0
    assert_tuned(json.loads((out / "metrics.json").read_text()))


def submit_from_train_page(monkeypatch, loss: str, matrix: SeverityMatrix, folder: str | None = None,
                           malignant: str = "", more=None) -> dict:
    """Set the matrix as the Severity page would, choose ``loss`` (and a ``folder`` with its
    ``malignant`` classes, and whatever ``more(at)`` sets) on the Train page, press Launch; return
    the submitted job's config."""
    from streamlit.testing.v1 import AppTest

    from rcl import jobs

    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: 0)
    at = AppTest.from_file(str(ROOT / "app_pages" / "2_Train.py"), default_timeout=90)
    at.session_state["matrix"] = matrix
    at.run()
    at.radio(key="train_loss").set_value(loss)
    at.number_input(key="train_epochs").set_value(1)
    at.selectbox(key="train_image_size").set_value(32)
    if folder is not None:
        at.radio(key="train_data_choice").set_value("a folder on this machine")
        at.text_input(key="train_folder").set_value(folder)
        at.text_input(key="train_malignant").set_value(malignant)
    if more is not None:
        more(at)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (job,) = jobs.JobStore().list()
    return job.config


def test_train_page_submits_the_matrix_the_user_set(monkeypatch):
    edited = SeverityMatrix.from_penalties(preset("isic2018"), 3.0, 12.0).with_cell("BCC", "NV", 33.0)
    config = submit_from_train_page(monkeypatch, "expected_risk", edited)
    assert (config["loss"], config["alpha"], config["beta"]) == ("expected_risk", 3.0, 12.0)
    assert np.array_equal(config["matrix"], edited.values)
    assert Taxonomy.from_dict(config["taxonomy"]) == preset("isic2018")


def test_train_page_submits_the_sliders_the_user_set(monkeypatch):
    config = submit_from_train_page(monkeypatch, "focal", SeverityMatrix.from_penalties(preset("isic2018"), 7.5, 2.5))
    assert (config["loss"], config["alpha"], config["beta"], config["matrix"]) == ("focal", 7.5, 2.5, None)


def test_train_page_submits_the_malignant_classes_of_a_folder(monkeypatch, tmp_path):
    for cls in ("cyst", "carcinoma"):
        (tmp_path / cls).mkdir()
    config = submit_from_train_page(monkeypatch, "ce", SeverityMatrix.from_penalties(preset("isic2018")),
                                    folder=str(tmp_path), malignant=" carcinoma ")
    assert config["data"] == str(tmp_path) and config["malignant"] == ["carcinoma"]


def miss_20_percent(at) -> None:
    at.selectbox(key="train_label_noise").set_value("miss")
    at.slider(key="train_noise_rate").set_value(20)


@pytest.mark.parametrize("more, expected", [(None, None), (miss_20_percent, "miss:0.2")])
def test_train_page_submits_label_noise_only_when_chosen(monkeypatch, more, expected):
    config = submit_from_train_page(monkeypatch, "rcl", SeverityMatrix.from_penalties(preset("isic2018")), more=more)
    assert config["label_noise"] == expected and (config["epochs"], config["image_size"]) == (1, 32)


def test_every_loss_is_explained_in_words_for_the_train_page():
    assert all(spec.summary and spec.name not in ("", spec.summary) for spec in LOSSES.values())
    assert all("matrix" in spec.summary for spec in COSTLY)  # the ones that use the Severity page's costs say so


@pytest.mark.slow
@pytest.mark.parametrize("loss", [spec.name for spec in COSTLY])
def test_train_page_cost_sensitive_job_trains_cost_sensitive(loss, monkeypatch, tmp_path):
    from rcl.train import run_training

    submitted = submit_from_train_page(monkeypatch, loss, SeverityMatrix.from_penalties(preset("isic2018"), 4, 16))
    config = TrainConfig.from_dict({**submitted, "limit": 100, "max_steps": 1, "batch_size": 16, "device": "cpu"})
    assert_tuned(run_training(config, tmp_path / "run"))
