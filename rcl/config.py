"""The typed configuration of one training run, serialised to ``config.json`` beside every run.

Plain values only (nanoGPT style): a run folder's ``config.json`` is enough to reproduce it with
``rcl train --config RUN/config.json``. ``check()`` validates everything that can be checked
without touching the data, so a background job with a bad config fails at submission.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rcl.atomic import write_json
from rcl.data.layouts import SYNTHETIC
from rcl.data.sampling import SAMPLING
from rcl.data.votes import TARGET_MODES
from rcl.loss_registry import LOSSES, canonical_loss
from rcl.paths import RUN_WEIGHTS
from rcl.selection import SELECTION_RULES
from rcl.severity import PROPOSED_ALPHA, PROPOSED_BETA, SeverityMatrix, validate_matrix
from rcl.taxonomy import Taxonomy, preset

AUTO = "auto"

# What a field left "auto" becomes, by the kind of device the run trains on. CPU: a plain 4-block
# CNN at 40 px (benchmarks/results/cpu_recipe.md: the best of the candidates that train HAM10000 in
# under 5 minutes on two cores); GPU (CUDA or Apple MPS): the paper's protocol,
# ResNet-50 at 224 px. config.json records the resolved values, so a run reproduces on any device.
DEVICE_DEFAULTS = {"cpu": {"model": "cnn4", "image_size": 40},
                   "gpu": {"model": "resnet50", "image_size": 224}}

def auto_choice() -> str:
    """What "auto" model and image size become, in words (the Train page's and the CLI's help)."""
    cpu, gpu = DEVICE_DEFAULTS["cpu"], DEVICE_DEFAULTS["gpu"]
    return (f"{cpu['model']} at {cpu['image_size']} px on a CPU, {gpu['model']} at {gpu['image_size']} px "
            "on a GPU")


# What a field meant for runs stored before it existed, where that differs from today's default:
# runs from before the sampling option drew every image once per epoch. Reading a run's config
# (``TrainConfig.load``, a sweep's finished-trial check) fills an absent field from here.
PREDATED = {"sampling": "shuffle"}


def as_recorded(train: dict) -> dict:
    """A train config as a run records it: fields it predates filled in (``PREDATED``, else the
    default) and "auto" sampling resolved for its loss. Two runs of equal records trained alike."""
    record = {**TrainConfig().to_dict(), **PREDATED, **train}
    if record["sampling"] == AUTO:
        record["sampling"] = sampling_for(record["loss"])
    return record


def sampling_for(loss: str) -> str:
    """What "auto" sampling becomes for a loss. Drawing rare classes more often raised HAM10000's
    test F1-macro from 0.608 to 0.643 (benchmarks/results/cpu_recipe.md); a loss that weights
    classes by their size already does that, and doing it twice is not asked for."""
    return "shuffle" if LOSSES[canonical_loss(loss)].takes_class_counts else "sqrt_balanced"


def option(default=None, help: str = "", *, factory=None, cli: str | None = "value", flag: str | None = None,
           choices=None):
    """A config field with what the CLI needs to offer it: ``rcl train``'s options are derived from these.

    ``cli``: ``"value"`` (``--flag VALUE``, typed from the annotation), ``"switch"`` (a flag that
    sets the opposite of the default), ``"list"`` (``A,B``), ``"file"`` (a JSON file the CLI reads),
    or None (config files only). ``flag`` overrides the flag name; ``choices`` is a callable giving
    the accepted values (shown in the help, checked by ``check``).
    """
    meta = {"help": help, "cli": cli, "flag": flag, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _selection_rules():
    return sorted(SELECTION_RULES)


def _augmentations():
    from rcl.data.transforms import AUGMENTATIONS  # torch: only when options are built or checked

    return sorted(AUGMENTATIONS)


@dataclass
class TrainConfig:
    # data
    data: str = option(SYNTHETIC, "dataset folder or CSV, or 'synthetic' for the bundled synthetic set")
    preset: str | None = option(None, "built-in taxonomy (brain_mri, isic2018, breakhis, sicapv2); "
                                      "default: detected from the layout")
    taxonomy: dict | None = option(None, "a taxonomy JSON file (classes and which are malignant)", cli="file")
    malignant: list[str] | None = option(None, "the malignant classes of a folder-per-class dataset, e.g. "
                                               "'melanoma,carcinoma' (the other classes are benign)", cli="list")
    # several annotators (rcl/data/votes.py)
    label_columns: list[str] | None = option(None, "a CSV's annotator columns, e.g. 'reader1,reader2,reader3' "
                                                   "(default: found by name, or 'mel|nv' cells)", cli="list")
    targets: str = option("soft", "with several annotators: train on their vote distribution (soft) or on the "
                                  "majority label", choices=lambda: list(TARGET_MODES))
    val_fraction: float = option(0.15, "share of the samples held out for validation")
    test_fraction: float = option(0.15, "share of the samples held out for testing")
    limit: int | None = option(None, "use at most N samples (stratified), for quick runs")
    drop_duplicates: bool = option(True, "keep val/test images whose content (bytes, or perceptual hash) also appears in train",
                                   cli="switch", flag="--keep-duplicates")
    # loss and severity
    loss: str = option("ce", "training loss; case, '-' and '_' do not matter", choices=lambda: list(LOSSES))
    alpha: float = option(PROPOSED_ALPHA, "false-alarm penalty, benign→malignant")
    beta: float = option(PROPOSED_BETA, "miss penalty, malignant→benign")
    matrix: list[list[float]] | None = option(None, "a severity matrix JSON file (overrides --alpha/--beta)",
                                              cli="file")
    loss_params: dict = option(help="extra loss parameters, e.g. {\"gamma\": 2} for focal", factory=dict, cli=None)
    # model
    model: str = option(AUTO, "small_cnn, cnn4, resnet18, resnet50, vit_base_patch16_224 or any timm name; "
                                    "auto: by device (cnn4 on CPU, resnet50 on a GPU)")
    pretrained: bool = option(False, "start from timm's ImageNet weights (needs a network once)", cli="switch")
    weights: str | None = option(None, "start from local .safetensors/.pt weights (offline machines), or fine-tune "
                                       "a finished run: its folder (same data and split only)")
    image_size: int | str = option(AUTO, "pixels, square; auto: by device (40 on CPU, 224 on a GPU)")
    augment: str = option("rotate_flip", "training-time augmentation", choices=_augmentations)
    sampling: str = option(AUTO, "how an epoch draws training images: shuffle (each image once) or sqrt_balanced "
                                 "(a class in proportion to the square root of its size); auto: sqrt_balanced, "
                                 "or shuffle for a loss that already weights classes by their size (wce)",
                           choices=lambda: [AUTO, *SAMPLING])
    # optimisation. Defaults: benchmarks/results/cpu_recipe.md (a cosine schedule run to its end:
    # stopping early would cut its low-learning-rate tail, hence no patience by default).
    epochs: int = option(24, "training epochs")
    batch_size: int = option(64, "images per optimiser step")
    lr: float = option(1e-3, "AdamW learning rate")
    weight_decay: float = option(0.01, "AdamW weight decay")
    ema: float | None = option(None, "evaluate and keep an exponential moving average of the weights, "
                                     "updated every step with this decay (e.g. 0.998); default: the raw weights")
    patience: int | None = option(None, "early stopping patience in epochs (default: never stop early)")
    select: str = option("f1", "checkpoint selection rule on validation", choices=_selection_rules)
    cer_cap: float | None = option(None, "for --select f1_cer_cap")
    f1_floor: float | None = option(None, "for --select cer_f1_floor")
    max_steps: int | None = option(None, "at most N optimiser steps per epoch (smoke tests)")
    seed: int = option(0, "random seed (splits, initialisation, augmentation)")
    device: str = option("auto", "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    amp: bool = option(True, "no mixed precision on GPU", cli="switch", flag="--no-amp")
    num_workers: int = option(0, "data loader worker processes")
    name: str | None = option(None, "a label for tables and plots")
    # label quality
    label_noise: str | None = option(None, "flip train labels: symmetric, miss (malignant→benign) or alarm "
                                           "(benign→malignant), as KIND:RATE, e.g. miss:0.1")
    label_corrections: str | None = option(None, "train on reviewed labels: a review file (rcl review, the Label "
                                                 "quality page) whose corrections replace the dataset's labels in "
                                                 "every split, before --label-noise")

    def __post_init__(self) -> None:
        # The one place a loss spelling becomes the registry's name: everything downstream
        # (loss factory, decision defaults, run summaries) reads the canonical name.
        self.loss = canonical_loss(self.loss)
        if isinstance(self.image_size, str) and self.image_size.strip().isdigit():
            self.image_size = int(self.image_size)  # "--image-size 64" arrives as text (the field also takes "auto")
        if isinstance(self.malignant, str):
            self.malignant = [name.strip() for name in self.malignant.split(",") if name.strip()]
        if isinstance(self.label_columns, str):
            self.label_columns = [name.strip() for name in self.label_columns.split(",") if name.strip()]

    @classmethod
    def from_matrix(cls, matrix: SeverityMatrix | None = None, base: TrainConfig | dict | None = None,
                    **overrides) -> TrainConfig:
        """The one way from a severity matrix (and form or flag values) to a checked config.

        ``base`` (a config or its dict) is overridden by ``overrides``; ``matrix`` then sets α/β
        (the paper's proposed values when the matrix has none) and, after per-cell edits, travels
        as an explicit matrix with its classes. An edited matrix whose classes differ from the
        ones the data implies is refused here, at submission, not after the data is read.
        """
        if isinstance(base, TrainConfig):
            base = base.to_dict()
        values = {**(base or {}), **overrides}
        if matrix is not None:
            values["alpha"] = float(matrix.alpha if matrix.alpha is not None else PROPOSED_ALPHA)
            values["beta"] = float(matrix.beta if matrix.beta is not None else PROPOSED_BETA)
            if not matrix.is_standard:
                implied = cls.from_dict({**values, "matrix": None}).resolved_taxonomy()
                if implied is not None and implied.classes != matrix.taxonomy.classes:
                    raise ValueError(f"the severity matrix is for classes {', '.join(matrix.taxonomy.classes)} but "
                                     f"the data's taxonomy ({implied.name}) has {', '.join(implied.classes)}: "
                                     "build the matrix for the data's classes, or choose a dataset of these classes")
                values["matrix"] = matrix.values.tolist()
                values["taxonomy"] = matrix.taxonomy.to_dict()
        return cls.from_dict(values).check()

    def check(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad field; fill the fields left "auto" for the
        run's device (``DEVICE_DEFAULTS``); return self."""
        self.resolve_auto()
        if self.data != SYNTHETIC and not Path(self.data).expanduser().exists():
            raise ValueError(f"dataset {self.data!r} does not exist (give a folder, a CSV, or 'synthetic')")
        self.loss = canonical_loss(self.loss)
        if self.malignant is not None and (not isinstance(self.malignant, list) or not self.malignant
                                           or not all(isinstance(m, str) and m for m in self.malignant)):
            raise ValueError(f"malignant must name at least one class, e.g. 'melanoma,carcinoma'; got {self.malignant!r}")
        if self.label_columns is not None and (not isinstance(self.label_columns, list) or not self.label_columns
                                               or not all(isinstance(c, str) and c for c in self.label_columns)):
            raise ValueError(f"label_columns must name at least one column, e.g. 'reader1,reader2'; got "
                             f"{self.label_columns!r}")
        if self.sampling != AUTO and self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be {AUTO!r} or one of: {', '.join(SAMPLING)}; got {self.sampling!r}")
        if self.targets not in TARGET_MODES:
            raise ValueError(f"targets must be one of: {', '.join(TARGET_MODES)}; got {self.targets!r}")
        taxonomy = self.resolved_taxonomy()
        if self.matrix is not None:
            if taxonomy is None:
                raise ValueError("an explicit --matrix needs --preset or --taxonomy so its classes are known")
            validate_matrix(self.matrix, taxonomy)
        for name in ("alpha", "beta", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("image_size", 16)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                either = f" or {AUTO!r}" if name in DEVICE_DEFAULTS["cpu"] else ""
                raise ValueError(f"{name} must be a whole number >= {low}{either}, got {value!r}")
        if self.ema is not None and not (isinstance(self.ema, (int, float)) and 0 < self.ema < 1):
            raise ValueError(f"ema must be a decay between 0 and 1 (e.g. 0.998) or unset, got {self.ema!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in [0, 1) and sum to less than 1")
        if self.select not in SELECTION_RULES:
            raise ValueError(f"unknown selection rule {self.select!r}; choose one of: {', '.join(SELECTION_RULES)}")
        if self.select == "f1_cer_cap" and self.cer_cap is None:
            raise ValueError("select=f1_cer_cap needs cer_cap (e.g. 0.1)")
        if self.select == "cer_f1_floor" and self.f1_floor is None:
            raise ValueError("select=cer_f1_floor needs f1_floor (e.g. 0.5)")
        if self.weights is not None:
            weights = Path(self.weights).expanduser().absolute()  # absolute: a job runs elsewhere
            if weights.is_dir():  # a finished run folder: fine-tune its weights (rcl/fine_tune.py)
                weights = weights / RUN_WEIGHTS
            if not weights.is_file():
                raise ValueError(f"weights {self.weights!r}: no such file, nor a finished run folder holding "
                                 f"{RUN_WEIGHTS}")
            self.weights = str(weights)
        from rcl.labels.noise import parse_noise

        parse_noise(self.label_noise)
        if self.label_corrections is not None:
            from rcl.labels.review import check_corrections_file

            self.label_corrections = check_corrections_file(self.label_corrections)  # absolute: a job runs elsewhere
        from rcl.data.transforms import check_augment  # torch/timm imports only when checking
        from rcl.models import check_model_name

        check_augment(self.augment)
        check_model_name(self.model)
        return self

    def resolved_sampling(self) -> str:
        """The sampling a run of this config uses: "auto" becomes the loss's (``sampling_for``).
        Resolved when a run starts, not in ``check``: a sweep derives one config per loss from a
        checked base, and each loss must get its own."""
        return sampling_for(self.loss) if self.sampling == AUTO else self.sampling

    def resolve_auto(self) -> TrainConfig:
        """Replace "auto" model and image size by the defaults for ``device``; return self."""
        auto = [name for name in DEVICE_DEFAULTS["cpu"] if getattr(self, name) == AUTO]
        if auto:
            from rcl.models import pick_device

            kind = "cpu" if pick_device(self.device).type == "cpu" else "gpu"
            for name in auto:
                setattr(self, name, DEVICE_DEFAULTS[kind][name])
        return self

    def resolved_taxonomy(self) -> Taxonomy | None:
        """The taxonomy named by the config, or None when it comes from the data's layout."""
        if self.taxonomy is not None:
            return Taxonomy.from_dict(self.taxonomy)
        if self.malignant is not None:
            return None  # built from the data's class folders with these malignant classes
        if self.preset is not None:
            return preset(self.preset)
        if self.data == SYNTHETIC:
            return preset("isic2018")
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {exc}") from exc
        # A run folder's config.json nests the train config under "train".
        if isinstance(data.get("train"), dict):
            return cls.from_dict({**PREDATED, **data["train"]})
        return cls.from_dict(data)
