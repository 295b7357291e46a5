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
:func:`resample_crop` (the tasks' default ``decode="fast"`` mode) computes the same filter over the
crop window only, as NumPy matrix products, about 0.7× Pillow's time.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from .errors import ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PreprocessSpec",
    "preprocess",
    "preprocess_batch",
    "resample_crop",
    "rgbx_image",
]

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
    image: Image.Image | np.ndarray,
    spec: PreprocessSpec,
    out: np.ndarray | None = None,
    *,
    window: bool = False,
    fast: bool = False,
) -> np.ndarray:
    """One RGB image → float32 ``3 × size × size`` (written into ``out`` when given). ``image`` is a
    Pillow image or RGBX pixels (``H × W × 4`` ``uint8``, as :func:`sparkvision.images.decode_pixels`
    returns).

    ``window``: see :func:`resize_and_crop`. ``fast``: resample with :func:`resample_crop` (NumPy
    matrix products over the crop window only, normalised on the way out) instead of Pillow: the
    same filter and grid, within one grey level of Pillow's crop-window resize on a few values in
    10,000, a quarter less time.
    """
    if isinstance(image, np.ndarray):
        if fast and spec.do_resize:
            return resample_crop(image, spec, out)
        image = rgbx_image(image)
    if fast and spec.do_resize and image.mode == "RGB":
        return resample_crop(image, spec, out)
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


# -- the NumPy resampler ---------------------------------------------------------------------------
#
# Pillow resamples an 8-bit image in two passes, horizontal then vertical, each a weighted sum of the
# input pixels around every output centre, rounded and clipped to 8 bits; its inner loop is scalar and
# holds RGB as four bytes a pixel. Written as matrix products the same passes run on BLAS: each pass is
# a banded matrix (an output pixel reads 2 × support × scale input pixels), cut into blocks of outputs
# so that each block multiplies only the input span it reads. The weights are Pillow's (same filters,
# supports, centres and normalisation, in float rather than Pillow's 22-bit fixed point), and rounding
# and clipping between the passes as Pillow does keep the result within one grey level of Pillow's
# crop-window resize, on a few values in 10,000.
#
# Every product stays at or below _GEMM_SIZE multiply-adds (m·n·k): OpenBLAS runs smaller ones on the
# calling thread, larger ones on its thread pool — on a busy machine 50× slower per call, and a lane
# of the scheduler must stay on its one core.

_GEMM_SIZE = 1 << 18
#: Larger crop windows of a Pillow image (copied out of it as RGBX) go through Pillow's resampler.
_MAX_WINDOW_PIXELS = 1 << 20
#: Arrays are read in place, so only the float copies grow with the window (a strip of at most
#: _STRIP_COLUMNS columns, and side × rows after the first pass): 8,192 window rows need ≈ 60 MB.
_MAX_WINDOW_ROWS = 8192
#: Input columns converted to float at once: a per-thread buffer of 128 × rows × 16 bytes.
_STRIP_COLUMNS = 128


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.abs(x), 0.0)


def _hamming(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    px = np.pi * np.maximum(x, 1e-300)
    value = np.where(x == 0, 1.0, np.sin(px) / px * (0.54 + 0.46 * np.cos(px)))
    return np.where(x >= 1, 0.0, value)


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3.0), 0.0)


#: Pillow's filters (``libImaging/Resample.c``) and their supports, in input pixels at scale 1.
_FILTERS = {
    "box": (_box, 0.5),
    "bilinear": (_triangle, 1.0),
    "hamming": (_hamming, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


@dataclass(frozen=True)
class _AxisPlan:
    """One pass along one axis: it reads input ``[start, stop)``; outputs ``[o0, o1)`` of each block
    are ``weights @ input[start + k0 : start + k1]``."""

    start: int
    stop: int
    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...]


def _axis_plan(
    in_size: int, out_size: int, in0: float, in1: float, interpolation: str, width: int
) -> _AxisPlan:
    """Pillow's ``precompute_coeffs`` for one axis, as banded float32 blocks whose products with
    ``width`` columns stay within ``_GEMM_SIZE``."""
    kernel, support = _FILTERS[interpolation]
    scale = (in1 - in0) / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    centres = in0 + (np.arange(out_size) + 0.5) * scale
    # Pillow truncates toward zero, then clamps to the image.
    lo = np.clip(np.trunc(centres - support + 0.5), 0, in_size).astype(np.int64)
    hi = np.maximum(np.clip(np.trunc(centres + support + 0.5), 0, in_size).astype(np.int64), lo)
    taps = lo[:, None] + np.arange(max(int((hi - lo).max()), 1))
    inside = taps < hi[:, None]
    w = kernel((taps - centres[:, None] + 0.5) / filterscale) * inside
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    start, stop = int(lo.min()), int(hi.max())
    dense = np.zeros((out_size, stop - start))
    rows = np.broadcast_to(np.arange(out_size)[:, None], taps.shape)
    dense[rows[inside], taps[inside] - start] = w[inside]

    def spans(block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # The centres increase, so lo and hi never decrease: a block of outputs reads from its first
        # output's lo to its last one's hi.
        o0 = np.arange(0, out_size, block)
        o1 = np.minimum(o0 + block, out_size)
        return o0, o1, lo[o0], hi[o1 - 1]

    block = out_size
    while block > 1:
        o0, o1, k0, k1 = spans(block)
        if int(((o1 - o0) * (k1 - k0)).max()) * width <= _GEMM_SIZE:
            break
        block = (block + 1) // 2 if block > 16 else block - 1
    blocks = tuple(
        (
            o0,
            o1,
            k0 - start,
            k1 - start,
            np.ascontiguousarray(dense[o0:o1, k0 - start : k1 - start], np.float32),
        )
        for o0, o1, k0, k1 in zip(*(a.tolist() for a in spans(block)))
    )
    return _AxisPlan(start, stop, blocks)


@functools.lru_cache(maxsize=512)
def _plan(
    spec: PreprocessSpec, width: int, height: int, in_place: bool = False
) -> tuple[_AxisPlan, _AxisPlan, tuple] | None:
    """Horizontal and vertical plans for one input size (cached: a folder has few distinct sizes), and
    the horizontal blocks grouped in strips of at most ``_STRIP_COLUMNS`` input columns; ``None`` when
    the crop window is too large for the scratch buffers (``in_place``: the pixels are an array, read
    without copying the window)."""
    new_w, new_h = spec.resize_shape(width, height)
    left, top, right, bottom = spec.crop_box(new_w, new_h)
    sx, sy = width / new_w, height / new_h
    down = _axis_plan(height, bottom - top, top * sy, bottom * sy, spec.interpolation, 4 * spec.size)
    rows = down.stop - down.start
    across = _axis_plan(width, right - left, left * sx, right * sx, spec.interpolation, 4 * rows)
    window = rows * (across.stop - across.start)
    if rows > _MAX_WINDOW_ROWS or (not in_place and window > _MAX_WINDOW_PIXELS):
        return None
    strips: list[tuple[int, int, list]] = []
    for block in across.blocks:
        k0, k1 = block[2], block[3]
        if strips and k1 - strips[-1][0] <= _STRIP_COLUMNS:
            strips[-1] = (strips[-1][0], k1, [*strips[-1][2], block])
        else:
            strips.append((k0, k1, [block]))
    return across, down, tuple((s0, s1, tuple(blocks)) for s0, s1, blocks in strips)


def _round_to_8_bits(values: np.ndarray) -> None:
    """In place, as Pillow stores a pass: round half up (ties are common with the box and triangle
    filters), then clip to 0–255."""
    values += 0.5
    np.floor(values, out=values)
    np.clip(values, 0, 255, out=values)


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """A per-thread work buffer, reused from one image to the next: fresh arrays of this size
    cost page faults, about as much time as the arithmetic on an ImageNet-sized photo."""
    need = math.prod(shape)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(name)
    if buffer is None or buffer.size < need:
        buffer = buffers[name] = np.empty(need, dtype=dtype)
    return buffer[:need].reshape(shape)


def rgbx_image(pixels: np.ndarray) -> Image.Image:
    """An ``H × W × 4`` RGBX ``uint8`` array (as :func:`sparkvision.images.decode_pixels` returns) as
    a Pillow ``"RGB"`` image (a copy)."""
    return Image.fromarray(np.ascontiguousarray(_rgbx_array(pixels)[:, :, :3]))


def _rgbx_array(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.strides[2] != 1:
        raise ConfigError(
            f"expected RGBX pixels (H × W × 4 uint8, a pixel's bytes adjacent), got {pixels.dtype} "
            f"{pixels.shape}"
        )
    return pixels


def resample_crop(
    image: Image.Image | np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None
) -> np.ndarray:
    """Resize, centre-crop and normalise an RGB image into float32 ``3 × size × size``, computing
    only the crop window: Pillow's filter, within one grey level of :func:`resize_and_crop` with
    ``window=True`` on a few values in 10,000 (see the comment above).

    ``image``: a Pillow ``"RGB"`` image, or RGBX pixels (``H × W × 4`` ``uint8``, rows and columns
    may be strided views, as :func:`sparkvision.images.decode_pixels` returns them), which are read
    in place — no copy of the crop window. The tasks' default ``decode="fast"`` mode uses it.
    ``"nearest"``, and crop windows of a Pillow image above a megapixel (non-JPEG images far larger
    than the model's input), go through Pillow instead.
    """
    if isinstance(image, np.ndarray):
        pixels = _rgbx_array(image)
        height, width = pixels.shape[:2]
    elif image.mode != "RGB":
        raise ConfigError(f"resample_crop needs an RGB image, got mode {image.mode!r}")
    else:
        pixels = None
        width, height = image.size
    plan = _plan(spec, width, height, pixels is not None) if spec.interpolation in _FILTERS else None
    if plan is None:
        return preprocess(image if pixels is None else rgbx_image(pixels), spec, out, window=True)
    across, down, strips = plan
    rows, side = down.stop - down.start, spec.size
    # Pixels travel as RGBX (Pillow's own layout): 16 bytes a pixel in float32, so that a whole
    # pixel moves as one complex128 when the passes swap axes — NumPy transposes 16-byte items
    # several times faster than three 4-byte channels.
    if pixels is None:
        window = image.crop((across.start, down.start, across.stop, down.stop)).tobytes("raw", "RGBX")
        words = np.frombuffer(window, dtype=np.uint32).reshape(rows, across.stop - across.start)
    else:  # one 32-bit word a pixel, a view of the window (any row and column strides)
        words = pixels.view(np.uint32)[down.start : down.stop, across.start : across.stop, 0]
    # Pass 1, horizontal: columns first (the window transposed), so each block is weights @ rows; a
    # strip of columns at a time keeps the float copy of the window small.
    passed = _scratch("passed", (side, 4 * rows))
    widest = max(s1 - s0 for s0, s1, _ in strips)
    turned_words = _scratch("words", (widest, rows), np.uint32)
    source = _scratch("source", (widest, rows, 4))
    for s0, s1, blocks in strips:
        turned_words[: s1 - s0] = words[:, s0:s1].T
        source[: s1 - s0] = turned_words[: s1 - s0].view(np.uint8).reshape(s1 - s0, rows, 4)
        flat = source.reshape(widest, 4 * rows)
        for o0, o1, k0, k1, weights in blocks:
            np.matmul(weights, flat[k0 - s0 : k1 - s0], out=passed[o0:o1])
    _round_to_8_bits(passed)
    # Pass 2, vertical: rows first.
    turned = _scratch("turned", (rows, 4 * side))
    turned.view(np.complex128)[...] = passed.view(np.complex128).T
    resized = _scratch("resized", (side, 4 * side))
    for o0, o1, k0, k1, weights in down.blocks:
        np.matmul(weights, turned[k0:k1], out=resized[o0:o1])
    _round_to_8_bits(resized)
    if out is None:
        out = np.empty((3, side, side), dtype=np.float32)
    np.multiply(resized.reshape(side, side, 4)[:, :, :3].transpose(2, 0, 1), spec._scale, out=out)
    out += spec._shift
    return out
