"""Build small labelled image folders from real photos that ship inside scikit-image (no download).

* :func:`build_dataset`: classes made of scikit-image's sample photos; every image is a random view of
  one source photo (crop, flip, small rotation, colour jitter, sometimes grey), saved as a JPEG.
* :func:`build_faces_dataset`: "face" / "background" / "texture" — the LFW faces and non-face patches
  in ``skimage.data.lfw_subset()`` (100 + 100 distinct 25×25 crops of real news photos) plus
  augmented 25×25 views of the brick/grass/gravel texture photos. Training and validation images come
  from *different* source photos, so validation measures whether the concept carries over to photos
  the head never saw, not whether it recognises a photo it was trained on. ImageNet-1k has no
  "face", "person" or "texture" class, so the base model's own labels cannot express these classes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from skimage import data as skdata

__all__ = ["CONCEPTS", "augment", "build_dataset", "build_faces_dataset", "source_photo"]

#: Classes that no ImageNet label names as such, each made of distinct source photos.
#: (ImageNet has "book jacket", "web site", "honeycomb"... but no "text", "texture" or "micrograph".)
CONCEPTS: dict[str, tuple[str, ...]] = {
    "texture": ("brick", "grass", "gravel"),
    "text": ("page", "text"),
    "micrograph": ("cell", "immunohistochemistry", "microaneurysms"),
    "everyday": ("astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "coins"),
    "sky": ("hubble_deep_field", "moon"),
}


@cache
def source_photo(name: str) -> np.ndarray:
    """One of scikit-image's sample photos as an RGB uint8 array."""
    loader: Callable[[], np.ndarray] = getattr(skdata, name)
    array = np.asarray(loader())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(float(np.ptp(array)), 1e-9)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def augment(photo: np.ndarray, rng: random.Random, *, out_side: int = 256) -> Image.Image:
    """A random view of ``photo``: rotation, crop, flip, colour jitter, sometimes grey."""
    image = Image.fromarray(photo)
    angle = rng.uniform(-15, 15)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)
    width, height = image.size
    # Stay inside the area the rotation left filled (a centred margin of sin(angle) of the side).
    margin = abs(np.sin(np.radians(angle)))
    inner = (margin * width, margin * height, width * (1 - margin), height * (1 - margin))
    inner_w, inner_h = inner[2] - inner[0], inner[3] - inner[1]
    scale = rng.uniform(0.3, 0.85)
    aspect = rng.uniform(3 / 4, 4 / 3)
    crop_w = min(inner_w, np.sqrt(scale * inner_w * inner_h * aspect))
    crop_h = min(inner_h, np.sqrt(scale * inner_w * inner_h / aspect))
    left = inner[0] + rng.uniform(0, inner_w - crop_w)
    top = inner[1] + rng.uniform(0, inner_h - crop_h)
    image = image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        image = image.convert("L").convert("RGB")
    factor = out_side / min(image.size)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BILINEAR)


def build_dataset(
    root: Path,
    sources: Mapping[str, Sequence[str]],
    per_source: int,
    *,
    seed: int = 0,
    out_side: int = 256,
) -> dict[str, list[Path]]:
    """Write ``per_source`` augmented JPEGs of every source photo into ``root/<class>/``."""
    rng = random.Random(seed)
    written: dict[str, list[Path]] = {}
    for label, names in sources.items():
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            photo = source_photo(name)
            for i in range(per_source):
                path = folder / f"{name}_{i:03d}.jpg"
                augment(photo, rng, out_side=out_side).save(path, quality=rng.randint(80, 95))
                written.setdefault(label, []).append(path)
    return written


def _texture_view(photo: np.ndarray, rng: random.Random, side: int) -> Image.Image:
    """A random square patch of a texture photo, rotated/flipped/jittered, shrunk to ``side`` pixels."""
    height, width = photo.shape[:2]
    crop = rng.randint(min(40, height, width), min(160, height, width))
    left, top = rng.randint(0, width - crop), rng.randint(0, height - crop)
    image = Image.fromarray(photo[top : top + crop, left : left + crop]).convert("L")
    image = image.rotate(rng.choice((0, 90, 180, 270)))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    return image.resize((side, side), Image.Resampling.BOX)


def build_faces_dataset(
    root: Path,
    *,
    train_faces: int = 60,
    val_faces: int = 40,
    textures: tuple[int, int] = (30, 20),
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``root/train/<class>`` and ``root/val/<class>`` PNGs; returns the two folders.

    face: LFW faces 0..train_faces-1 for training, the next ``val_faces`` for validation (different
    photos; a few famous people appear in both, as they do in LFW). background: LFW non-face patches,
    split the same way. texture: ``textures[0]`` views each of the brick and grass photos for training,
    ``textures[1]`` views of the gravel photo — a photo training never saw — for validation.
    """
    lfw = np.round(np.asarray(skdata.lfw_subset()) * 255).astype(np.uint8)
    faces, backgrounds = lfw[:100], lfw[100:]
    if train_faces + val_faces > 100:
        raise ValueError("lfw_subset has 100 faces and 100 non-faces")
    rng = random.Random(seed)
    folders = (root / "train", root / "val")
    for split, folder in enumerate(folders):
        chosen = range(train_faces) if split == 0 else range(train_faces, train_faces + val_faces)
        for label, images in (("face", faces), ("background", backgrounds)):
            (folder / label).mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i]).save(folder / label / f"lfw_{label}_{i:03d}.png")
        (folder / "texture").mkdir(parents=True, exist_ok=True)
        for name in ("brick", "grass") if split == 0 else ("gravel",):
            photo = source_photo(name)
            for i in range(textures[split]):
                _texture_view(photo, rng, lfw.shape[1]).save(folder / "texture" / f"{name}_{i:03d}.png")
    return folders
