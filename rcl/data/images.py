"""Decoding images, once: the hot path between files on disk and the training loop.

``load_rgb`` and ``resize_rgb`` are the *only* way pixels enter rcl, at training time and at
inference time alike, so a model never sees a different preprocessing in triage than in training.
``cache_images`` decodes a dataset once into a compact uint8 ``.npy`` (N, S, S, 3) in the cache
folder, keyed by the file list with sizes and mtimes, and memory-maps it afterwards: a second run,
or a background job beside the app, starts instantly and shares pages through the OS cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import stat
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from rcl import paths
from rcl.data.checks import announce, skipped_warnings
from rcl.data.table import DatasetTable

CACHE_VERSION = 1  # bump when decoding or resizing changes, so old caches are not reused
# The pixel budget: a decoded image never has more (Pillow warns only at 89 MP and refuses at 179 MP).
MAX_PIXELS = 40_000_000
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}  # Pillow's; else 4
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F"})  # Image.reduce's modes
PARALLEL_ABOVE = 500  # below this, starting worker processes costs more than it saves
_CHUNK = 256


def load_rgb(source) -> Image.Image:
    """An RGB PIL image from a path, bytes or a binary file object, whatever the stored mode
    (grayscale, RGBA, palette, 16-bit, CMYK), upright per its EXIF orientation, and at most
    ``MAX_PIXELS`` pixels: a larger image is decoded reduced (see ``_decode_within_budget``).

    Raises ``ValueError("<name> is not a readable image: <reason>")`` for missing, empty, corrupt,
    oversized or non-image input, a folder or a device, so callers can report the file and go on.
    """
    name = str(source) if isinstance(source, (str, Path)) else "this file"
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        if isinstance(source, (str, Path)):
            _check_file(Path(source))
        with warnings.catch_warnings():  # the pixel budget below replaces Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(source)
        try:
            image = _decode_within_budget(opened)
            if image is not opened:
                opened.close()  # frees the full-size pixels before the reduced copy is converted
            return _to_rgb(ImageOps.exif_transpose(image))
        finally:
            opened.close()
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{name} is not a readable image: it has far more pixels than any photograph "
                         f"(over {2 * Image.MAX_IMAGE_PIXELS // 10**6} million), so it was not decoded; "
                         "it may be a decompression bomb") from exc
    except (OSError, ValueError, SyntaxError, TypeError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, Image.UnidentifiedImageError):  # Pillow's message names the stream object
            reason = "not a recognised image format (jpg, png, bmp, tiff, ...)"
        raise ValueError(f"{name} is not a readable image: {reason}") from exc


def _check_file(path: Path) -> None:
    """A regular, non-empty file; a folder or a device (which would block the reader) is named as such."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise ValueError("it is a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise ValueError("it is not a regular file (a device, pipe or socket)")
    if os.stat(path).st_size == 0:
        raise ValueError("the file is empty")


def _decode_within_budget(image: Image.Image) -> Image.Image:
    """Decode ``image`` (opened, not loaded) to at most ``MAX_PIXELS`` pixels.

    A JPEG is decoded reduced by its DCT scaling (``draft``: 1/2, 1/4 or 1/8), so the full image
    never exists in memory. Other formats decode whole in their stored mode, then shrink by an
    integer factor; one whose stored decode would take more memory than an in-budget RGB image
    (``4 * MAX_PIXELS`` bytes) is refused: e.g. a 144-MP one-bit PNG decodes (144 MB) and
    shrinks, a 144-MP RGB PNG (576 MB) does not.
    """
    width, height = image.size
    if width * height <= MAX_PIXELS:
        image.load()
        return image
    factor = math.ceil(math.sqrt(width * height / MAX_PIXELS))
    if image.format == "JPEG":
        image.draft(image.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    decoded = image.size[0] * image.size[1] * _BYTES_PER_PIXEL.get(image.mode, 4)
    if decoded > 4 * MAX_PIXELS:
        raise ValueError(f"it has {width} × {height} pixels ({width * height / 1e6:.0f} MP), too many to decode "
                         f"safely (images above {MAX_PIXELS // 10**6} MP are shrunk while decoding only when "
                         "they are JPEG or one byte per pixel): shrink it first")
    image.load()
    factor = math.ceil(math.sqrt(image.size[0] * image.size[1] / MAX_PIXELS))
    if factor == 1:
        return image
    if image.mode in _REDUCIBLE:
        return image.reduce(factor)
    size = (max(1, image.size[0] // factor), max(1, image.size[1] // factor))
    return image.resize(size, Image.Resampling.NEAREST)  # palette and bit modes: no averaging of indices


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, rescaling high-bit-depth modes (16-bit medical PNGs) to 8 bits instead of clipping them."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F" or values.max(initial=0) > 65535:
            low, high = float(values.min(initial=0)), float(values.max(initial=0))
            values = (values - low) / (high - low or 1.0) * 255
        elif values.max(initial=0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_rgb(image: Image.Image, image_size: int) -> np.ndarray:
    """(S, S, 3) uint8: a direct bilinear resize to a square (PIL antialiases when shrinking).
    No crop: a lesion near the border is never cut off."""
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number, got {image_size!r}")
    if image.mode != "RGB":
        image = _to_rgb(image)
    resized = image.resize((int(image_size), int(image_size)), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)


def thumbnail(source, size: int = 192) -> Image.Image:
    """A small RGB copy for a gallery: :func:`load_rgb` (same pixel budget, same refusals), shrunk
    to fit ``size`` × ``size`` px with its aspect kept, so a page never sends full-size photographs."""
    image = load_rgb(source)
    image.thumbnail((int(size), int(size)))
    return image


def _decode_into(job: tuple[str, int, int, list[str]]) -> list[tuple[int, str]]:
    """Worker: decode ``files`` into rows ``start..`` of the memory-mapped array at ``target``;
    return (row, reason) for the unreadable ones. Writing straight into the map keeps pixels out
    of inter-process pipes."""
    target, image_size, start, files = job
    array = np.lib.format.open_memmap(target, mode="r+")
    failed = []
    for offset, file in enumerate(files):
        try:
            array[start + offset] = resize_rgb(load_rgb(file), image_size)
        except ValueError as exc:
            failed.append((start + offset, str(exc)))
    array.flush()
    return failed


def _cache_key(files: list[str], image_size: int) -> tuple[str, list[tuple[int, str]]]:
    """A hash of (file, size, mtime) for every file plus the image size; files that cannot even be
    stat'ed are reported as unreadable here."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{image_size}|{len(files)}".encode())
    missing = []
    for row, file in enumerate(files):
        try:
            stat = os.stat(file)
            digest.update(f"\n{file}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        except OSError as exc:
            missing.append((row, f"{file} is not a readable image: {exc.strerror or exc}"))
            digest.update(f"\n{file}|missing".encode())
    return digest.hexdigest()[:32], missing


def cache_images(table: DatasetTable, image_size: int, indices=None,
                 workers: int | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode the table's images (all rows, or ``indices``) once to (S, S) RGB and cache them.

    Returns ``(images, skipped)``: ``images`` is a read-only memory map holding the *readable*
    images only, in row order; ``skipped`` lists each unreadable file as (path, reason). The caller
    drops the skipped rows (``prepare`` does). The next call with the same files (same sizes and
    mtimes) and size maps the cached file without decoding anything.
    """
    samples = table.samples if indices is None else table.samples.iloc[np.asarray(indices, dtype=np.int64)]
    files = samples["path"].astype(str).tolist()
    key, missing = _cache_key(files, image_size)
    folder = paths.cache_dir() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    final, manifest = folder / f"{key}-{image_size}px.npy", folder / f"{key}-{image_size}px.json"
    if final.is_file() and manifest.is_file():
        return np.load(final, mmap_mode="r"), [tuple(item) for item in json.loads(manifest.read_text())["skipped"]]

    tmp = folder / f".{key}-{uuid.uuid4().hex[:8]}.npy"
    count = len(files)
    failed = dict(missing)
    try:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, image_size, image_size, 3)).flush()
        jobs = [(str(tmp), image_size, start, files[start : start + _CHUNK]) for start in range(0, count, _CHUNK)]
        workers = min(workers or os.cpu_count() or 1, len(jobs))
        if workers > 1 and count > PARALLEL_ABOVE:
            # forkserver, not fork: the app and the trainer are multi-threaded (torch, Streamlit),
            # and forking a threaded process can deadlock; the server starts clean once.
            # A pool whose workers cannot start (a broken environment) must not hang the run: the
            # executor reports a dead worker, and decoding goes on in this process.
            context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
            try:
                with ProcessPoolExecutor(workers, mp_context=context) as pool:
                    results = list(pool.map(_decode_into, jobs))
            except BrokenProcessPool:
                results = [_decode_into(job) for job in jobs]
        else:
            results = [_decode_into(job) for job in jobs]
        for result in results:
            failed.update({row: reason for row, reason in result if row not in failed})
        good = np.array([row for row in range(count) if row not in failed], dtype=np.int64)
        if len(good) < count:  # compact: keep readable rows only, so callers never see a blank image
            decoded = np.load(tmp, mmap_mode="r")
            compact = folder / f".{key}-{uuid.uuid4().hex[:8]}-c.npy"
            out = np.lib.format.open_memmap(compact, mode="w+", dtype=np.uint8,
                                            shape=(len(good), image_size, image_size, 3))
            for start in range(0, len(good), 4096):
                out[start : start + 4096] = decoded[good[start : start + 4096]]
            out.flush()
            del out, decoded
            os.replace(compact, tmp)
        skipped = [(files[row], _reason(files[row], failed[row])) for row in sorted(failed)]
        os.replace(tmp, final)
        manifest_tmp = manifest.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        manifest_tmp.write_text(json.dumps({"files": count, "image_size": image_size, "skipped": skipped}))
        os.replace(manifest_tmp, manifest)  # written last: its presence marks the cache complete
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.load(final, mmap_mode="r"), skipped


def _reason(file: str, message: str) -> str:
    """The reason without the file name that ``load_rgb`` puts in front of it."""
    prefix = f"{file} is not a readable image: "
    return message.removeprefix(prefix)


@dataclass
class PreparedData:
    """What training needs: decoded images of the readable samples and their rows.

    ``images[i]`` is the image of ``samples.iloc[i]`` (``samples`` has a fresh 0..N-1 index);
    ``skipped`` lists the unreadable files that were dropped, as (path, reason), and ``warnings``
    says so in a line per reason (:func:`rcl.data.checks.skipped_warnings`).
    """

    images: np.ndarray
    samples: pd.DataFrame
    skipped: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return self.samples["label"].to_numpy(dtype=np.int64)


def prepare(table: DatasetTable, image_size: int) -> PreparedData:
    """Decode (or map from the cache) every image of ``table`` and drop the unreadable ones."""
    images, skipped = cache_images(table, image_size)
    bad = {path for path, _ in skipped}
    keep = ~table.samples["path"].astype(str).isin(bad).to_numpy()
    samples = table.samples[keep].reset_index(drop=True)
    assert len(samples) == len(images), "the image cache does not match the table"
    notes = announce(skipped_warnings(skipped, len(table), what="image"))
    return PreparedData(images=images, samples=samples, skipped=list(skipped), warnings=notes)
