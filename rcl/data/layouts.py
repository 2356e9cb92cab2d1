"""``load_dataset``: read a dataset the way users download it, and say clearly when it cannot.

Layouts are detected from the files, in this order (the first that fits wins):

- ``synthetic``: the bundled synthetic set (:mod:`rcl.data.synthetic`);
- HAM10000 / ISIC 2018 Task 3: ``HAM10000_metadata.csv`` (group = ``lesion_id``), or the official
  ``ISIC2018_Task3_*_GroundTruth.csv`` one-hot files (group from ``*LesionGroupings.csv`` if present);
- Brain Tumor MRI and any ``Training/``+``Testing/`` tree of class folders (the dataset's own split);
- SICAPv2: ``images/`` + ``partition/**/{Train,Test}.xlsx`` (one-hot NC, G3, G4, G5);
- BreaKHis: ``.../{benign,malignant}/SOB/<subtype>/<patient>/<mag>X/*.png`` (group = patient);
- generic: a class-per-folder tree, or a CSV of (path, label[, group][, split]); a CSV may give
  several annotators' labels instead of one (:mod:`rcl.data.votes`).

Labels always go through ``Taxonomy.index`` (case-insensitive, aliases), so "no_tumor" and
"notumor" are one class and an unknown label is an error naming it rather than a silent new class.
Nothing here decodes pixels: a table of 10,000 images costs a directory walk and a CSV read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rcl.data.checks import announce, empty_class_warnings, skipped_warnings
from rcl.data.csv_layout import read_csv_layout
from rcl.data.table import IMAGE_EXTENSIONS, TEST_NAMES, TRAIN_NAMES, DatasetTable, Row, make_samples
from rcl.data.votes import raw_names, vote_source, votes_and_majority
from rcl.errors import UserError
from rcl.taxonomy import PRESETS, Taxonomy, normalise_name
from rcl.taxonomy import preset as get_preset

SYNTHETIC = "synthetic"
ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
SICAP_CLASSES = ("NC", "G3", "G4", "G5")
MAGNIFICATIONS = (40, 100, 200, 400)


# -- file-system helpers ------------------------------------------------------------------------
def _visible(name: str) -> bool:
    """Hidden files and folders (.DS_Store, .ipynb_checkpoints) and macOS zip debris are never data."""
    return not name.startswith(".") and name != "__MACOSX" and name != "Thumbs.db"


def _walk_files(root: Path) -> list[Path]:
    """Every visible file below ``root``, sorted (os.walk: no stat per file, fast on 10k files)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if _visible(d))
        found.extend(Path(folder, f) for f in files if _visible(f))
    return sorted(found)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _visible(p.name))


def _find(root: Path, match, max_depth: int, dirs: bool = False) -> list[Path]:
    """Entries below ``root`` (depth <= max_depth) for which ``match(name)`` holds, breadth-first."""
    found, level = [], [root]
    for _ in range(max_depth + 1):
        following = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if not _visible(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:  # a link that loops or dangles is no folder to search
                    is_dir = False
                if is_dir and (not dirs or not match(entry.name)):
                    following.append(Path(entry.path))
                if is_dir == dirs and match(entry.name):
                    found.append(Path(entry.path))
        level = following
    return found


def _image_index(root: Path) -> dict[str, Path]:
    """Images below ``root`` by file stem (metadata files name images without folder or extension)."""
    index: dict[str, Path] = {}
    for path in _walk_files(root):
        if _is_image(path):
            index.setdefault(path.stem, path)
    return index


# -- layout readers: each returns (root, layout, rows, skipped, default preset name or None) -----
def _read_class_folders(root: Path, split: str | None = None, skipped: list | None = None) -> list[Row]:
    """One folder per class, images anywhere below it."""
    skipped = [] if skipped is None else skipped
    rows: list[Row] = []
    for path in sorted(p for p in root.iterdir() if p.is_file() and _visible(p.name) and _is_image(p)):
        skipped.append((str(path), "image not inside a class folder"))
    for folder in _subdirs(root):
        for path in _walk_files(folder):
            if _is_image(path):
                rows.append((path, folder.name, None, split))
            else:
                skipped.append((str(path), f"not an image file (extension {path.suffix or 'none'!r})"))
    return rows


def _read_ham(csv: Path) -> tuple[list[Row], list]:
    root = csv.parent
    meta = pd.read_csv(csv, dtype=str)
    missing = {"lesion_id", "image_id", "dx"} - set(meta.columns)
    if missing:
        raise ValueError(f"{csv.name} lacks the column(s) {', '.join(sorted(missing))}")
    skipped: list = []
    index = _image_index(root)
    rows: list[Row] = []
    for lesion, image, dx in meta[["lesion_id", "image_id", "dx"]].itertuples(index=False):
        path = index.get(str(image))
        if path is None:
            skipped.append((str(image), f"listed in {csv.name} but no image file found"))
        else:
            rows.append((path, dx, lesion, None))
    return rows, skipped


def _read_isic_groundtruth(root: Path, csvs: Sequence[Path]) -> tuple[list[Row], list]:
    """Official ISIC 2018 Task 3 one-hot CSVs; several (Training/Validation/Test) give a split."""
    skipped: list = []
    index = _image_index(root)
    groups: dict[str, str] = {}
    for grouping in _find(root, lambda n: "lesiongrouping" in normalise_name(n) and n.endswith(".csv"), 2):
        table = pd.read_csv(grouping, dtype=str)
        if {"image", "lesion_id"} <= set(table.columns):
            groups.update(zip(table["image"], table["lesion_id"]))
    rows: list[Row] = []
    for csv in csvs:
        truth = pd.read_csv(csv)
        classes = [c for c in truth.columns if c.upper() in ISIC_CLASSES]
        if "image" not in truth.columns or not classes:
            raise ValueError(f"{csv.name} is not an ISIC 2018 Task 3 ground truth (columns image, MEL, NV, ...)")
        split = ("test" if "test" in csv.name.lower() else "train") if len(csvs) > 1 else None
        onehot = truth[classes].to_numpy(dtype=float)
        for image, row in zip(truth["image"].astype(str), onehot):
            path = index.get(image)
            if path is None:
                skipped.append((image, f"listed in {csv.name} but no image file found"))
            elif row.max() <= 0:
                skipped.append((image, f"no class marked in {csv.name}"))
            else:
                rows.append((path, classes[int(row.argmax())], groups.get(image), split))
    return rows, skipped


def _read_train_test(root: Path, train: Path, test: Path) -> tuple[list[Row], list]:
    skipped: list = []
    rows = _read_class_folders(train, "train", skipped) + _read_class_folders(test, "test", skipped)
    return rows, skipped


def _read_breakhis(sob_dirs: Sequence[Path], magnification: int | None) -> tuple[list[Row], list]:
    """``SOB/<subtype>/<patient>/<mag>X/<file>``: label = subtype, group = patient folder."""
    skipped: list = []
    rows: list[Row] = []
    for sob in sob_dirs:
        for path in _walk_files(sob):
            parts = path.relative_to(sob).parts
            if not _is_image(path):
                skipped.append((str(path), f"not an image file (extension {path.suffix or 'none'!r})"))
            elif len(parts) != 4:
                skipped.append((str(path), "not at SOB/<subtype>/<patient>/<magnification>X/<file>"))
            elif magnification is None or parts[2].upper() == f"{magnification}X":
                rows.append((path, parts[0], parts[1], None))
    return rows, skipped


def _read_sicap(root: Path, partition: Path) -> tuple[list[Row], list]:
    """SICAPv2: the final ``partition/Test/{Train,Test}.xlsx`` pair (patient-level split by the
    authors) when present, else the first pair found. Group = slide id (the name's first field)."""
    sheets = sorted(partition.rglob("*.xlsx"))
    tests = [p for p in sheets if p.name.lower() == "test.xlsx"]
    tests.sort(key=lambda p: (p.parent.name.lower() != "test", str(p)))
    folder = tests[0].parent if tests else next((p.parent for p in sheets if p.name.lower() == "train.xlsx"), None)
    if folder is None:
        raise ValueError(f"SICAPv2 partition folder {partition} has no Train.xlsx/Test.xlsx")
    image_dirs = _find(root, lambda n: n.lower() == "images", 2, dirs=True)
    skipped: list = []
    index = _image_index(image_dirs[0] if image_dirs else root)
    rows: list[Row] = []
    for split in ("test", "train"):  # test first: an image listed in both stays held out
        sheet = next((p for p in sheets if p.parent == folder and p.name.lower() == f"{split}.xlsx"), None)
        if sheet is None:
            continue
        frame = pd.read_excel(sheet, engine="openpyxl")
        classes = [c for c in frame.columns if str(c).upper() in SICAP_CLASSES]
        if "image_name" not in frame.columns or not classes:
            raise ValueError(f"{sheet} lacks image_name and the one-hot columns NC, G3, G4, G5")
        onehot = frame[classes].to_numpy(dtype=float)
        for name, row in zip(frame["image_name"].astype(str), onehot):
            path = index.get(Path(name).stem)
            if path is None:
                skipped.append((name, f"listed in {sheet.name} but no image file found"))
            elif np.nanmax(row) <= 0:
                skipped.append((name, f"no class marked in {sheet.name}"))
            else:
                rows.append((path, str(classes[int(np.nanargmax(row))]), name.split("_")[0], split))
    return rows, skipped


# -- taxonomy -----------------------------------------------------------------------------------
def _matching_preset(names: Iterable[str]) -> Taxonomy | None:
    """The preset whose classes (or aliases) cover every label found, if exactly one does."""
    names = set(names)
    fits = []
    for taxonomy in PRESETS.values():
        try:
            for name in names:
                taxonomy.index(name)
        except ValueError:
            continue
        fits.append(taxonomy)
    return fits[0] if len(fits) == 1 else None


def _taxonomy(raw_labels: Sequence[str], taxonomy, preset, malignant, default: str | None, name: str) -> Taxonomy:
    if taxonomy is not None:
        if isinstance(taxonomy, Taxonomy):
            return taxonomy
        return Taxonomy.from_dict(taxonomy) if isinstance(taxonomy, dict) else Taxonomy.load(taxonomy)
    found = sorted(set(raw_labels), key=str.lower)
    if malignant is not None:  # an empty list is a real answer: every class benign
        if isinstance(malignant, str):
            malignant = [m.strip() for m in malignant.split(",") if m.strip()]
        return Taxonomy.from_malignant(found, malignant, name=name)
    if preset is not None:
        return get_preset(preset)
    if default is not None:
        return get_preset(default)
    if len(found) < 2:  # one folder fits many taxonomies: never guess a 7-class one from it
        raise UserError(f"{name!r} has images of one class only ({', '.join(found) or 'none'}): a classifier "
                        "needs at least two; add the other classes' folders, or pass --preset to say which "
                        "taxonomy these images belong to")
    matched = _matching_preset(found)
    if matched is not None:
        return matched
    raise ValueError(
        f"cannot tell which of the classes ({', '.join(found)}) are malignant: pass --preset "
        f"({', '.join(PRESETS)}), --taxonomy FILE, or --malignant A,B"
    )


def _magnification(value) -> int | None:
    if value is None:
        return None
    try:
        number = int(str(value).upper().removesuffix("X"))
    except ValueError:
        number = -1
    if number not in MAGNIFICATIONS:
        raise ValueError(f"magnification must be one of {', '.join(map(str, MAGNIFICATIONS))}, got {value!r}")
    return number


# -- detection ----------------------------------------------------------------------------------
def _detect(path: Path, magnification: int | None, wrapper_ok: bool = True, label_columns=None):
    """(root, layout, rows, skipped, default preset) for a folder or file."""
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"{path.name!r}: give a dataset folder or a CSV of (path, label), not a {path.suffix} file")
        columns = set(pd.read_csv(path, nrows=0).columns)
        if {"lesion_id", "image_id", "dx"} <= columns:
            return path.parent, "ham10000", *_read_ham(path), "isic2018"
        if "image" in columns and {c.upper() for c in columns} >= set(ISIC_CLASSES):
            return path.parent, "isic2018_groundtruth", *_read_isic_groundtruth(path.parent, [path]), "isic2018"
        return path.parent, "csv", *read_csv_layout(path, label_columns), None

    ham = _find(path, lambda n: n == "HAM10000_metadata.csv", 0)
    if ham:
        return ham[0].parent, "ham10000", *_read_ham(ham[0]), "isic2018"
    truth = _find(path, lambda n: n.startswith("ISIC2018_Task3") and "GroundTruth" in n and n.endswith(".csv"), 1)
    if truth:
        return path, "isic2018_groundtruth", *_read_isic_groundtruth(path, truth), "isic2018"
    subdirs = _subdirs(path)
    train = [d for d in subdirs if d.name.lower() in TRAIN_NAMES]
    test = [d for d in subdirs if d.name.lower() in TEST_NAMES]
    if train and test:
        return path, "train_test_folders", *_read_train_test(path, train[0], test[0]), None
    partition = _find(path, lambda n: n.lower() == "partition", 1, dirs=True)
    if partition:
        return path, "sicapv2", *_read_sicap(partition[0].parent, partition[0]), "sicapv2"
    sob = [d for d in _find(path, lambda n: n == "SOB", 6, dirs=True) if d.parent.name.lower() in ("benign", "malignant")]
    if sob:
        return path, "breakhis", *_read_breakhis(sob, magnification), "breakhis"
    if subdirs:
        if len(subdirs) == 1 and wrapper_ok:  # a zip that unpacked into one wrapper folder
            try:
                return _detect(subdirs[0], magnification, wrapper_ok=False, label_columns=label_columns)
            except ValueError:
                pass
        skipped: list = []
        return path, "class_folders", _read_class_folders(path, None, skipped), skipped, None
    csvs = sorted(p for p in path.glob("*.csv") if _visible(p.name))
    if len(csvs) == 1:
        return path, "csv", *read_csv_layout(csvs[0], label_columns), None
    raise ValueError(f"no images found in {str(path)!r}: expected class sub-folders, a CSV of (path, label), "
                     "or a known layout (HAM10000, ISIC 2018, Brain Tumor MRI, BreaKHis, SICAPv2)")


def load_dataset(source, preset: str | None = None, taxonomy=None, *, malignant=None,
                 magnification=None, label_columns=None) -> DatasetTable:
    """List a dataset: the synthetic default (``"synthetic"``), a folder or a CSV.

    ``taxonomy`` (a Taxonomy, its dict or a JSON file) beats ``malignant`` (names of the malignant
    classes, a list or "A,B") beats ``preset`` beats the layout's own preset; a generic tree whose
    folder names fit exactly one preset uses it. ``magnification`` (40/100/200/400) filters BreaKHis.
    ``label_columns`` (a list or "A,B") names a CSV's annotator columns (:mod:`rcl.data.votes`).
    """
    magnification = _magnification(magnification)
    if str(source).strip().lower() == SYNTHETIC:
        from rcl.data.synthetic import materialize

        if magnification is not None:
            raise ValueError("--magnification only applies to BreaKHis")
        if label_columns:
            raise ValueError("--label-columns only applies to a CSV dataset, not to the synthetic set")
        root = materialize()
        rows = _read_class_folders(root)
        tax = _taxonomy([], taxonomy, preset, malignant, "isic2018", SYNTHETIC)
        return _table(SYNTHETIC, root, SYNTHETIC, tax, rows, [], synthetic=True)
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"dataset folder {str(source)!r} does not exist")
    path = path.resolve()
    root, layout, rows, skipped, default = _detect(path, magnification, label_columns=label_columns)
    if magnification is not None and layout != "breakhis":
        raise ValueError(f"--magnification only applies to BreaKHis, but {str(source)!r} is a {layout} layout")
    if label_columns and layout != "csv":
        raise ValueError(f"--label-columns only applies to a CSV of (path, labels), but {str(source)!r} is a "
                         f"{layout} layout")
    if not rows:
        raise ValueError(f"no images found in {str(source)!r} ({layout} layout)"
                         + (f"; {len(skipped)} file(s) skipped, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""))
    name = root.name if layout != "csv" else Path(source).stem
    tax = _taxonomy(raw_names(r[1] for r in rows), taxonomy, preset, malignant, default, name)
    if layout == "train_test_folders" and tax.name == "brain_mri":
        layout = "brain_mri"
    return _table(name, root, layout, tax, rows, skipped)


def _table(name, root: Path, layout: str, taxonomy: Taxonomy, rows: list[Row], skipped: list,
           synthetic: bool = False) -> DatasetTable:
    """Map raw labels through the taxonomy (once per distinct spelling) and build the table; with
    several annotators' votes, the label is their majority (``rcl.data.votes.majority``)."""
    index: dict[str, int] = {}
    for raw in set(raw_names(r[1] for r in rows)):
        try:
            index[raw] = taxonomy.index(raw)
        except ValueError as exc:
            column = vote_source([r[1] for r in rows], raw)
            where = f"label {raw!r}" if column is None else f"column {column!r} has {raw!r}, which"
            raise ValueError(f"{layout} dataset {str(root)!r}: {where} is not a class of taxonomy "
                             f"{taxonomy.name!r} ({', '.join(taxonomy.classes)}); pass --taxonomy or "
                             f"--malignant to describe this dataset's classes") from exc
    votes, labels, source = votes_and_majority([r[1] for r in rows], index, taxonomy)
    samples = make_samples(root, [(p, int(label), group, split) for (p, _, group, split), label in zip(rows, labels)],
                           votes=votes)
    skipped = [(str(p), str(r)) for p, r in skipped]
    notes = announce(skipped_warnings(skipped, len(rows) + len(skipped))
                     + empty_class_warnings(samples["label"].to_numpy(), taxonomy))
    return DatasetTable(name=name, root=root, layout=layout, taxonomy=taxonomy, samples=samples,
                        skipped=skipped, synthetic=synthetic, warnings=notes, vote_source=source)
