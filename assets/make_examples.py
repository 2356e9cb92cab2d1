"""Regenerate the bundled example images for the Triage page with rcl's own synthetic generator.

These are synthetic, not patient data: ``python assets/make_examples.py`` writes one PNG per class
of the synthetic (ISIC-2018-like) taxonomy into this folder, at the demo model's image size, from
``rcl.demo.example_images`` (``tests/test_triage.py`` checks the files match it).
"""

from pathlib import Path

from PIL import Image

from rcl.demo import example_images

HERE = Path(__file__).resolve().parent


def main() -> None:
    for name, image in example_images().items():
        Image.fromarray(image).save(HERE / f"synthetic_{name}.png", optimize=True)
        print(f"wrote synthetic_{name}.png")


if __name__ == "__main__":
    main()
