"""Every real photo the tests can reach without a network, and simple variations of them.

The bundled examples (scikit-image's sample photos), more of scikit-image's sample data, scikit-learn's two
sample photos and matplotlib's Grace Hopper portrait — all CC0 or public domain. ``variations`` adds
a mirror image, crops, a half-size copy and a quarter turn, so that a model is checked on framings it
was not calibrated on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import skimage
import sklearn
from PIL import Image, ImageOps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
_SKIMAGE = ("motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "coins.png", "ihc.png", "grass.png",
            "gravel.png", "brick.png", "moon.png")  # fmt: skip

#: Photos with one clear ImageNet subject: file stem → the classes a correct model may answer.
LABELLED = {
    "coffee": {"espresso"},
    "chelsea": {"tiger cat", "Egyptian cat", "tabby, tabby cat"},
    "camera": {"tripod"},
    "china": {"palace"},
    "motorcycle_left": {"moped", "motor scooter, scooter"},
}


def photo_paths() -> list[Path]:
    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    photos += [Path(skimage.__file__).parent / "data" / name for name in _SKIMAGE]
    photos += [Path(sklearn.__file__).parent / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")]
    photos.append(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    return photos


def variations(image: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    w, h = image.size
    yield "original", image
    yield "mirrored", ImageOps.mirror(image)
    yield "centre 80 %", ImageOps.crop(image, (w // 10, h // 10))
    yield "top-left 70 %", image.crop((0, 0, int(w * 0.7), int(h * 0.7)))
    yield "half size", image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    yield "quarter turn", image.transpose(Image.Transpose.ROTATE_90)


def photo_set() -> list[tuple[str, Image.Image]]:
    """``(name, RGB image)`` for every photo and variation (102 in all)."""
    out = []
    for path in photo_paths():
        image = Image.open(path).convert("RGB")
        out += [(f"{path.stem} ({tag})", v) for tag, v in variations(image)]
    return out
