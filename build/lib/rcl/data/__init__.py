"""Datasets for rcl: the synthetic default, real layouts, leakage-safe splits, a decoded-image
cache, the shared preprocessing and a data audit.

Names that need torch (``ImageArrayDataset``, ``preprocess``, ``normalize``) are imported on first
use: listing or auditing a dataset, and the image-decoding worker processes, never pay for
importing torch.
"""

from importlib import import_module

from rcl.data.audit import AuditReport, audit
from rcl.data.images import PreparedData, cache_images, load_rgb, prepare, resize_rgb
from rcl.data.layouts import load_dataset
from rcl.data.splits import drop_cross_split_duplicates, duplicate_mask, file_sha256, make_splits
from rcl.data.synthetic import SYNTHETIC_NOTE, generate, materialize
from rcl.data.table import DatasetTable, subsample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LAZY = {"ImageArrayDataset": "rcl.data.transforms", "preprocess": "rcl.data.transforms",
         "normalize": "rcl.data.transforms", "random_rotate_flip": "rcl.data.transforms"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rcl.data' has no attribute {name!r}")


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYNTHETIC_NOTE",
    "AuditReport",
    "DatasetTable",
    "PreparedData",
    "audit",
    "cache_images",
    "drop_cross_split_duplicates",
    "duplicate_mask",
    "file_sha256",
    "generate",
    "load_dataset",
    "load_rgb",
    "make_splits",
    "materialize",
    "prepare",
    "resize_rgb",
    "subsample",
    *_LAZY,
]
