"""The pixel budget: a large image is decoded reduced, not in full; a decompression bomb, a folder
or a device is refused in plain words, by the one reader (``load_rgb``) that training and triage share."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image, ImageDraw

from rcl.data import images as images_module
from rcl.data import load_rgb
from rcl.triage import read_image

BUDGET = 10_000  # pixels, for the small monkeypatched cases


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(images_module, "MAX_PIXELS", BUDGET)


def saved(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


PEAK = """
import resource, sys
import numpy as np
from rcl.data.images import MAX_PIXELS, load_rgb
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_rgb(sys.argv[1])
peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
pixels = np.asarray(image)
print(image.width, image.height, MAX_PIXELS, round(peak_mb), pixels[:50, :50].mean(), pixels[-50:, -50:].mean())
"""


def test_a_12000_square_png_is_decoded_reduced_with_low_peak_memory(tmp_path):
    """144 MP in one bit per pixel (a few KB on disk): decoding it in full and converting to RGB
    took about 0.8 GB; now the peak stays near the one-byte-per-pixel decode, the result fits the
    budget and still shows what the file holds (white top-left quarter, black elsewhere)."""
    big = Image.new("1", (12_000, 12_000))
    ImageDraw.Draw(big).rectangle((0, 0, 5_999, 5_999), fill=1)
    path = saved(big, tmp_path / "big.png")
    del big
    assert path.stat().st_size < 200_000
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout.split()
    width, height, budget, peak_mb = map(int, out[:4])
    top_left, bottom_right = map(float, out[4:])
    assert width * height <= budget and (width, height) == (6_000, 6_000)
    assert peak_mb < 400, f"peak {peak_mb} MB"  # the full RGB decode alone is 576 MB
    assert top_left == 255.0 and bottom_right == 0.0


def test_jpeg_is_reduced_while_decoding(small_budget, tmp_path):
    path = saved(Image.new("RGB", (400, 400), (200, 30, 30)), tmp_path / "big.jpg", quality=95)
    image = load_rgb(path)
    assert image.width * image.height <= BUDGET and image.size == (100, 100)  # DCT scale 1/4
    assert np.abs(np.asarray(image, dtype=int).mean(axis=(0, 1)) - (200, 30, 30)).max() < 6


def test_grayscale_png_is_reduced_by_an_integer_factor(small_budget, tmp_path):
    path = saved(Image.new("L", (150, 150), 90), tmp_path / "gray.png")
    image = load_rgb(path)
    assert image.size == (75, 75) and image.mode == "RGB" and np.asarray(image).max() == 90


def test_palette_png_keeps_its_colours_when_reduced(small_budget, tmp_path):
    pixels = np.indices((150, 150)).sum(axis=0) % 2  # a checkerboard of palette entries 0 and 1
    image = Image.fromarray(pixels.astype(np.uint8), mode="P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    reduced = load_rgb(saved(image, tmp_path / "pal.png"))
    colours = {tuple(c) for c in np.asarray(reduced).reshape(-1, 3).tolist()}
    assert reduced.width * reduced.height <= BUDGET and colours <= {(255, 0, 0), (0, 0, 255)}


def test_rgb_png_too_large_to_decode_is_refused(small_budget, tmp_path):
    path = saved(Image.new("RGB", (300, 300)), tmp_path / "huge.png")
    with pytest.raises(ValueError, match=r"huge.png is not a readable image: it has 300 × 300 pixels \(0 MP\), "
                                         r"too many to decode safely"):
        load_rgb(path)


def test_decompression_bomb_gets_a_plain_message(monkeypatch, tmp_path):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = saved(Image.new("L", (100, 100)), tmp_path / "bomb.png")
    with pytest.raises(ValueError) as info:
        load_rgb(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a readable image: it has far more pixels than any photograph")
    assert "DOS" not in message and "decompression bomb" in message


def test_folders_and_devices_are_named(tmp_path):
    with pytest.raises(ValueError, match="is not a readable image: it is a folder, not an image file"):
        load_rgb(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result: list = []
    reader = threading.Thread(target=lambda: result.append(pytest.raises(ValueError, load_rgb, fifo)))
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading a named pipe blocked"
    assert "it is not a regular file (a device, pipe or socket)" in str(result[0].value)


def test_triage_reads_through_the_same_reader(small_budget, tmp_path):
    with pytest.raises(ValueError, match="it is a folder, not an image file"):
        read_image(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    buffer = io.BytesIO()
    Image.new("L", (150, 150), 40).save(buffer, format="PNG")
    assert read_image(buffer.getvalue()).size == (75, 75)
