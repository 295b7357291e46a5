"""Turn decoded RGB images into the float32 tensors a model was trained to see.

A :class:`PreprocessSpec` travels with every model (inside ``sparkvision.json``) so that the same
maths runs in every front. The resize follows the torchvision/timm evaluation convention, which is
what the reference frameworks use for the models we ship and import:

* ``resize="crop"``: scale the short side to ``floor(size / crop_pct)`` (the long side keeps the aspect
  ratio, truncated like ``torchvision.transforms.Resize``), then take the centre ``size × size`` crop
  (offsets rounded like ``CenterCrop``). ``crop_pct=1`` gives CLIP's "short side to size, centre crop".
* ``resize="squash"``: resize straight to ``size × size`` (Hugging Face ViT, Swin).
* ``resize="squash_crop"``: resize straight to a square of side ``floor(size / crop_pct)``, then take the
  centre ``size × size`` crop (Hugging Face DeiT: 256 → 224; timm's ``crop_mode="squash"``).

The centre-crop offsets are rounded like torchvision (``crop_rounding="round"``: Python's ``round`` of
the half-difference, timm and torchvision models) or floored like Hugging Face's image processors
(``crop_rounding="floor"``); the two differ by one pixel for some image sizes.

Resizing uses Pillow's resamplers, which antialias when downscaling. Skipping antialiasing, or using
another interpolation than the one a model was trained with, costs up to a few points of accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from .errors import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PreprocessSpec", "preprocess", "preprocess_batch"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
ResizeMode = Literal["crop", "squash", "squash_crop"]
CropRounding = Literal["round", "floor"]

_PIL_RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: Pillow's integer resample codes (Spark NLP's ``resample`` param uses them) → our names.
PIL_CODE_TO_INTERPOLATION: dict[int, str] = {int(code): name for name, code in _PIL_RESAMPLE.items()}


def _triple(values: Sequence[float], what: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ConfigError(f"{what} needs 1 or 3 numbers (one per RGB channel), got {len(values)}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class PreprocessSpec:
    """How to turn an RGB image into a model input (one per model, stored in ``sparkvision.json``).

    Attributes:
        size: side of the square model input, in pixels.
        resize: ``"crop"`` (short side to ``size / crop_pct`` then centre crop), ``"squash"`` or
            ``"squash_crop"`` (square of side ``size / crop_pct``, then centre crop).
        crop_pct: fraction of the resized short side kept by the centre crop (not used by ``"squash"``).
        crop_rounding: ``"round"`` (torchvision/timm) or ``"floor"`` (Hugging Face) centre-crop offsets.
        interpolation: Pillow resampling filter used for the resize.
        do_resize: when false the image must already be ``size × size``.
        do_rescale / rescale_factor: multiply pixel values (0–255) by this, normally 1/255.
        do_normalize / mean / std: per-channel ``(x - mean) / std`` after rescaling.
    """

    size: int = 224
    resize: ResizeMode = "crop"
    crop_pct: float = 0.875
    interpolation: Interpolation = "bicubic"
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_rounding: CropRounding = "round"
    _scale: np.ndarray = field(init=False, repr=False, compare=False)
    _shift: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 1:
            raise ConfigError(f"size must be a positive integer, got {self.size!r}")
        if self.resize not in ("crop", "squash", "squash_crop"):
            raise ConfigError(f"resize must be 'crop', 'squash' or 'squash_crop', got {self.resize!r}")
        if self.crop_rounding not in ("round", "floor"):
            raise ConfigError(f"crop_rounding must be 'round' or 'floor', got {self.crop_rounding!r}")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.interpolation not in _PIL_RESAMPLE:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(_PIL_RESAMPLE)}"
            )
        mean, std = _triple(self.mean, "mean"), _triple(self.std, "std")
        if any(s == 0 for s in std):
            raise ConfigError("std must not contain zeros")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        # (x * rescale - mean) / std  ==  x * scale + shift, folded once per spec.
        rescale = self.rescale_factor if self.do_rescale else 1.0
        if self.do_normalize:
            scale = np.array([rescale / s for s in std], dtype=np.float32)
            shift = np.array([-m / s for m, s in zip(mean, std)], dtype=np.float32)
        else:
            scale = np.full(3, rescale, dtype=np.float32)
            shift = np.zeros(3, dtype=np.float32)
        object.__setattr__(self, "_scale", scale.reshape(3, 1, 1))
        object.__setattr__(self, "_shift", shift.reshape(3, 1, 1))

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def resize_short_side(self) -> int:
        """Short side after the resize step (``size`` for squash)."""
        if self.resize == "squash":
            return self.size
        return math.floor(self.size / self.crop_pct)

    def resize_shape(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the image after the resize step, before cropping."""
        if self.resize == "squash":
            return self.size, self.size
        short = self.resize_short_side
        if self.resize == "squash_crop":
            return short, short
        if width <= height:
            return short, int(short * height / width)
        return int(short * width / height), short

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Centre-crop box ``(left, top, right, bottom)`` in the resized image."""
        if self.crop_rounding == "floor":
            top, left = (height - self.size) // 2, (width - self.size) // 2
        else:
            top = int(round((height - self.size) / 2.0))
            left = int(round((width - self.size) / 2.0))
        return left, top, left + self.size, top + self.size

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_scale", None)
        data.pop("_shift", None)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}")
        return cls(**data)


def resize_and_crop(image: Image.Image, spec: PreprocessSpec, *, window: bool = False) -> Image.Image:
    """Apply the spec's geometry (resize + centre crop) to an RGB Pillow image.

    ``window=True`` resamples only the pixels inside the crop (Pillow's ``box``): the same filter
    centres and weights as resizing the whole image and then cropping, about twice as fast on a large
    image, a fifth faster on an ImageNet-sized one, but rounding can move a few output values by one
    or two levels. The tasks use it in their default ``decode="fast"`` mode; ``decode="exact"`` always
    resizes the whole image and crops, bit-identical to the reference frameworks.
    """
    if not spec.do_resize:
        if image.size != (spec.size, spec.size):
            raise ConfigError(
                f"do_resize is off but the image is {image.size[0]}×{image.size[1]}, "
                f"not {spec.size}×{spec.size}"
            )
        return image
    new_w, new_h = spec.resize_shape(*image.size)
    resample = _PIL_RESAMPLE[spec.interpolation]
    if window and (new_w, new_h) != image.size:
        left, top, right, bottom = spec.crop_box(new_w, new_h)
        sx, sy = image.size[0] / new_w, image.size[1] / new_h
        box = (left * sx, top * sy, right * sx, bottom * sy)
        return image.resize((right - left, bottom - top), resample, box=box)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), resample)
    if (new_w, new_h) != (spec.size, spec.size):
        image = image.crop(spec.crop_box(new_w, new_h))
    return image


def preprocess(
    image: Image.Image,
    spec: PreprocessSpec,
    out: np.ndarray | None = None,
    *,
    window: bool = False,
) -> np.ndarray:
    """One RGB image → float32 ``3 × size × size`` (written into ``out`` when given).

    ``window``: see :func:`resize_and_crop`.
    """
    pixels = np.asarray(resize_and_crop(image, spec, window=window), dtype=np.uint8)
    if out is None:
        out = np.empty((3, spec.size, spec.size), dtype=np.float32)
    # Convert first, then scale in place: a mixed uint8 × float32 multiply from the transposed view
    # goes through NumPy's buffered casting loop (in float64), 8× slower: 1.5 ms of an ImageNet-sized
    # photo's 4.4. Bit-identical: an 8-bit value times a float32 is exact in float64, so both round once.
    out[...] = pixels.transpose(2, 0, 1)
    out *= spec._scale
    out += spec._shift
    return out


def preprocess_batch(images: Sequence[Image.Image], spec: PreprocessSpec) -> np.ndarray:
    """Several RGB images → float32 ``N × 3 × size × size``."""
    batch = np.empty((len(images), 3, spec.size, spec.size), dtype=np.float32)
    for i, image in enumerate(images):
        preprocess(image, spec, out=batch[i])
    return batch
