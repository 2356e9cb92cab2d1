import pytest

import rcl
from rcl.taxonomy import Taxonomy


def test_presets_match_spec_hierarchies():
    brain = rcl.preset("brain_mri")
    assert brain.benign == ("notumor",)
    assert set(brain.malignant) == {"glioma", "meningioma", "pituitary"}
    isic = rcl.preset("isic2018")
    assert set(isic.benign) == {"NV", "BKL", "DF", "VASC"}
    assert set(isic.malignant) == {"MEL", "BCC", "AKIEC"}
    breakhis = rcl.preset("breakhis")
    assert breakhis.num_classes == 8 and len(breakhis.malignant) == 4
    assert set(breakhis.benign) == {"adenosis", "fibroadenoma", "phyllodes_tumor", "tubular_adenoma"}
    sicap = rcl.preset("sicapv2")
    assert sicap.benign == ("NC",) and sicap.malignant == ("G3", "G4", "G5")


@pytest.mark.parametrize(
    "preset_name, spelling, canonical",
    [
        ("isic2018", "mel", "MEL"),
        ("isic2018", "MEL", "MEL"),
        ("isic2018", "Melanoma", "MEL"),
        ("isic2018", "nv", "NV"),
        ("brain_mri", "notumor", "notumor"),
        ("brain_mri", "no_tumor", "notumor"),
        ("brain_mri", "No Tumor", "notumor"),
        ("breakhis", "Phyllodes Tumor", "phyllodes_tumor"),
        ("breakhis", "DC", "ductal_carcinoma"),
        ("sicapv2", "gleason 4", "G4"),
    ],
)
def test_names_match_case_insensitively_with_aliases(preset_name, spelling, canonical):
    assert rcl.preset(preset_name).canonical(spelling) == canonical


def test_preset_names_are_forgiving_but_unknown_is_a_clear_error():
    assert rcl.preset("ISIC2018") is rcl.preset("ham10000")
    with pytest.raises(ValueError, match="unknown preset 'chest'.*brain_mri"):
        rcl.preset("chest")


def test_unknown_class_names_the_class_and_the_known_ones():
    with pytest.raises(ValueError, match="'lymphoma' is not in taxonomy 'isic2018'.*MEL"):
        rcl.preset("isic2018").index("lymphoma")


def test_json_round_trip(tmp_path):
    taxonomy = rcl.preset("isic2018")
    path = tmp_path / "t.json"
    taxonomy.save(path)
    assert Taxonomy.load(path) == taxonomy


def test_from_malignant_and_more_than_two_superclasses():
    t = Taxonomy.from_malignant(["x", "y", "z"], ["Z"])
    assert t.is_critical == (False, False, True)
    graded = Taxonomy("graded", ("nc", "low", "high"), (0, 1, 2), ("benign", "premalignant", "malignant"), 2)
    assert graded.is_critical == (False, False, True)
    assert Taxonomy.from_json(graded.to_json()) == graded


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="t", classes=("a",), superclass=(0,)), "at least 2 classes"),
        (dict(name="t", classes=("a", "b"), superclass=(0,)), "2 classes but 1 superclass"),
        (dict(name="t", classes=("a", "A"), superclass=(0, 1)), "same name"),
        (dict(name="t", classes=("a", "b"), superclass=(0, 5)), "class 'b' has superclass 5"),
    ],
)
def test_invalid_taxonomies_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Taxonomy(**kwargs)


def test_bad_json_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        Taxonomy.from_json("{nope")
    with pytest.raises(ValueError, match="needs 'classes'"):
        Taxonomy.from_json('{"name": "x"}')
    with pytest.raises(ValueError, match="does not exist"):
        Taxonomy.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="malignant class 'q' is not one of"):
        Taxonomy.from_malignant(["a", "b"], ["q"])
