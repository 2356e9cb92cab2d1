"""Fine classes and the clinical superclass each belongs to.

A :class:`Taxonomy` is the one place that knows which fine classes are benign and which are
malignant. Superclasses are *ordered by severity*: index 0 is the least critical (benign), and a
prediction whose superclass is lower than the truth's is an under-call (a Type II error when the
truth is critical). The paper has two superclasses; nothing here assumes only two, so graded
hierarchies (benign < pre-malignant < malignant) can come later without changing callers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENIGN_MALIGNANT = ("benign", "malignant")


def normalise_name(name: str) -> str:
    """Case- and punctuation-insensitive key: ``"No Tumor"``, ``"no_tumor"`` and ``"notumor"`` match."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@dataclass(frozen=True)
class Taxonomy:
    """Fine classes, each mapped to an ordered clinical superclass.

    ``classes[k]`` is the canonical name of class ``k``; ``superclass[k]`` the index into
    ``superclasses`` (ordered by severity); superclasses at index >= ``critical_from`` are
    critical (malignant), the rest are not. ``aliases`` maps extra spellings to canonical names.
    """

    name: str
    classes: tuple[str, ...]
    superclass: tuple[int, ...]
    superclasses: tuple[str, ...] = BENIGN_MALIGNANT
    critical_from: int = 1
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "superclass", tuple(int(s) for s in self.superclass))
        object.__setattr__(self, "superclasses", tuple(str(s) for s in self.superclasses))
        object.__setattr__(self, "aliases", dict(self.aliases))
        if len(self.classes) < 2:
            raise ValueError(f"taxonomy {self.name!r} needs at least 2 classes, got {len(self.classes)}")
        if len(self.superclass) != len(self.classes):
            raise ValueError(
                f"taxonomy {self.name!r}: {len(self.classes)} classes but {len(self.superclass)} superclass entries"
            )
        if len(self.superclasses) < 2:
            raise ValueError(f"taxonomy {self.name!r} needs at least 2 superclasses")
        if not 0 < self.critical_from < len(self.superclasses):
            raise ValueError(
                f"taxonomy {self.name!r}: critical_from must be in 1..{len(self.superclasses) - 1}, "
                f"got {self.critical_from}"
            )
        for cls, sup in zip(self.classes, self.superclass):
            if not 0 <= sup < len(self.superclasses):
                raise ValueError(
                    f"taxonomy {self.name!r}: class {cls!r} has superclass {sup}, "
                    f"expected 0..{len(self.superclasses) - 1} ({', '.join(self.superclasses)})"
                )
        keys: dict[str, str] = {}
        for cls in self.classes:
            key = normalise_name(cls)
            if not key:
                raise ValueError(f"taxonomy {self.name!r}: class name {cls!r} has no letters or digits")
            if key in keys:
                raise ValueError(f"taxonomy {self.name!r}: classes {keys[key]!r} and {cls!r} are the same name")
            keys[key] = cls
        for alias, target in self.aliases.items():
            if target not in self.classes:
                raise ValueError(f"taxonomy {self.name!r}: alias {alias!r} points to unknown class {target!r}")
            existing = keys.get(normalise_name(alias))
            if existing is not None and existing != target:
                raise ValueError(f"taxonomy {self.name!r}: alias {alias!r} clashes with class {existing!r}")
        object.__setattr__(self, "_lookup", {**{normalise_name(a): t for a, t in self.aliases.items()}, **keys})

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_malignant(
        cls, classes: Sequence[str], malignant: Iterable[str], name: str = "custom"
    ) -> Taxonomy:
        """Two-superclass taxonomy from the class list and the names of the malignant ones."""
        keys = {normalise_name(c): i for i, c in enumerate(classes)}
        superclass = [0] * len(classes)
        for m in malignant:
            index = keys.get(normalise_name(m))
            if index is None:
                raise ValueError(f"malignant class {m!r} is not one of the classes: {', '.join(classes)}")
            superclass[index] = 1
        return cls(name=name, classes=tuple(classes), superclass=tuple(superclass))

    # -- queries ----------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_critical(self) -> tuple[bool, ...]:
        """Per fine class: does it belong to a critical (malignant) superclass?"""
        return tuple(s >= self.critical_from for s in self.superclass)

    @property
    def malignant(self) -> tuple[str, ...]:
        return tuple(c for c, crit in zip(self.classes, self.is_critical) if crit)

    @property
    def benign(self) -> tuple[str, ...]:
        return tuple(c for c, crit in zip(self.classes, self.is_critical) if not crit)

    def index(self, name: str) -> int:
        """Index of a class given any accepted spelling (case-insensitive, aliases included)."""
        canonical = self._lookup.get(normalise_name(name))  # type: ignore[attr-defined]
        if canonical is None:
            raise ValueError(
                f"class {name!r} is not in taxonomy {self.name!r}; known classes: {', '.join(self.classes)}"
            )
        return self.classes.index(canonical)

    def canonical(self, name: str) -> str:
        return self.classes[self.index(name)]

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "classes": [
                {"name": c, "superclass": self.superclasses[s]} for c, s in zip(self.classes, self.superclass)
            ],
            "superclasses": list(self.superclasses),
            "critical_from": self.critical_from,
            "aliases": dict(sorted(self.aliases.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Taxonomy:
        try:
            superclasses = tuple(data.get("superclasses", BENIGN_MALIGNANT))
            rows = data["classes"]
            names, supers = [], []
            for row in rows:
                names.append(row["name"])
                sup = row["superclass"]
                if isinstance(sup, str):
                    if sup not in superclasses:
                        raise ValueError(
                            f"class {row['name']!r} has superclass {sup!r}, expected one of {', '.join(superclasses)}"
                        )
                    sup = superclasses.index(sup)
                supers.append(sup)
            return cls(
                name=data.get("name", "custom"),
                classes=tuple(names),
                superclass=tuple(supers),
                superclasses=superclasses,
                critical_from=int(data.get("critical_from", 1)),
                aliases=dict(data.get("aliases", {})),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "a taxonomy JSON needs 'classes': [{'name': ..., 'superclass': 'benign'|'malignant'}, ...]"
                f" ({exc!r})"
            ) from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Taxonomy:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"taxonomy JSON is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError("taxonomy JSON must be an object with a 'classes' list")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"taxonomy file {str(path)!r} does not exist")
        return cls.from_json(path.read_text())


def _preset(name: str, benign: dict[str, list[str]], malignant: dict[str, list[str]], order: list[str]) -> Taxonomy:
    """Build a preset from {class: [aliases]} for each superclass, in a given class order."""
    aliases = {alias: cls for group in (benign, malignant) for cls, names in group.items() for alias in names}
    return Taxonomy(
        name=name,
        classes=tuple(order),
        superclass=tuple(1 if c in malignant else 0 for c in order),
        aliases=aliases,
    )


# Class order follows the order users meet in the files: folder order for Brain MRI, the column
# order of the official ISIC 2018 Task 3 ground-truth CSV, BreaKHis' benign-then-malignant folder
# order, and SICAPv2's partition columns.
PRESETS: dict[str, Taxonomy] = {
    "brain_mri": _preset(
        "brain_mri",
        benign={"notumor": ["no_tumor", "no tumour", "normal", "healthy"]},
        malignant={
            "glioma": ["glioma_tumor"],
            "meningioma": ["meningioma_tumor"],
            "pituitary": ["pituitary_tumor"],
        },
        order=["glioma", "meningioma", "notumor", "pituitary"],
    ),
    "isic2018": _preset(
        "isic2018",
        benign={
            "NV": ["nevus", "naevus", "melanocytic nevus", "melanocytic nevi"],
            "BKL": ["benign keratosis", "benign keratosis-like lesions", "seborrheic keratosis"],
            "DF": ["dermatofibroma"],
            "VASC": ["vascular lesion", "vascular lesions"],
        },
        malignant={
            "MEL": ["melanoma"],
            "BCC": ["basal cell carcinoma"],
            "AKIEC": ["actinic keratosis", "actinic keratoses", "bowen", "intraepithelial carcinoma", "ak"],
        },
        order=["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"],
    ),
    "breakhis": _preset(
        "breakhis",
        benign={
            "adenosis": ["a"],
            "fibroadenoma": ["f"],
            "phyllodes_tumor": ["pt", "phyllodes"],
            "tubular_adenoma": ["ta"],
        },
        malignant={
            "ductal_carcinoma": ["dc"],
            "lobular_carcinoma": ["lc"],
            "mucinous_carcinoma": ["mc"],
            "papillary_carcinoma": ["pc"],
        },
        order=[
            "adenosis", "fibroadenoma", "phyllodes_tumor", "tubular_adenoma",
            "ductal_carcinoma", "lobular_carcinoma", "mucinous_carcinoma", "papillary_carcinoma",
        ],
    ),
    "sicapv2": _preset(
        "sicapv2",
        benign={"NC": ["non-cancerous", "noncancerous", "benign", "gleason 0"]},
        malignant={"G3": ["gleason 3", "gleason3"], "G4": ["gleason 4", "gleason4"], "G5": ["gleason 5", "gleason5"]},
        order=["NC", "G3", "G4", "G5"],
    ),
}


def preset(name: str) -> Taxonomy:
    """A built-in taxonomy: ``brain_mri``, ``isic2018`` (= HAM10000), ``breakhis`` or ``sicapv2``."""
    key = normalise_name(name)
    aliases = {"ham10000": "isic2018", "isic": "isic2018", "brainmri": "brain_mri", "braintumormri": "brain_mri"}
    for preset_name, taxonomy in PRESETS.items():
        if normalise_name(preset_name) == key:
            return taxonomy
    if key in aliases:
        return PRESETS[aliases[key]]
    raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
