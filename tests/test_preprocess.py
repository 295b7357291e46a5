"""Preprocessing geometry and arithmetic (the reference check against timm's transforms lives in
tests/timm/, which runs where torchvision is importable)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from sparkvision.errors import ConfigError
from sparkvision.preprocess import (
    PreprocessSpec,
    preprocess,
    preprocess_batch,
    resample_crop,
    resize_and_crop,
)


def lite0_spec() -> PreprocessSpec:
    return PreprocessSpec(size=224, crop_pct=0.875, interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.mark.parametrize(
    ("size", "crop_pct", "width", "height", "expected"),
    [
        (224, 0.875, 500, 375, (341, 256)),  # floor(224 / 0.875) = 256; long side truncated like torchvision
        (224, 0.875, 375, 500, (256, 341)),
        (240, 0.882, 640, 427, (407, 272)),  # floor(240 / 0.882) = 272; int(272 * 640 / 427) = 407
        (260, 0.890, 300, 300, (292, 292)),  # floor(260 / 0.890) = 292
        (224, 1.0, 451, 300, (336, 224)),
    ],
)
def test_resize_shape_follows_torchvision(size, crop_pct, width, height, expected) -> None:
    spec = PreprocessSpec(size=size, crop_pct=crop_pct)
    assert spec.resize_short_side == math.floor(size / crop_pct)
    assert spec.resize_shape(width, height) == expected


def test_centre_crop_offsets_round_like_torchvision() -> None:
    spec = PreprocessSpec(size=224)
    # CenterCrop: top = int(round((h - size) / 2)), Python's round half to even.
    assert spec.crop_box(341, 256) == (58, 16, 282, 240)
    assert spec.crop_box(225, 225) == (0, 0, 224, 224)  # round(0.5) == 0
    assert spec.crop_box(227, 227) == (2, 2, 226, 226)  # round(1.5) == 2


def test_preprocess_equals_pillow_resize_crop_and_normalise() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
    spec = lite0_spec()
    expected_img = image.resize((341, 256), Image.Resampling.BICUBIC).crop((58, 16, 282, 240))
    expected = (np.asarray(expected_img, dtype=np.float64).transpose(2, 0, 1) / 255 - 0.5) / 0.5
    got = preprocess(image, spec)
    assert got.dtype == np.float32 and got.shape == (3, 224, 224)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_squash_mode_and_imagenet_normalisation() -> None:
    image = Image.new("RGB", (300, 100), (255, 128, 0))
    spec = PreprocessSpec(size=32, resize="squash", interpolation="bilinear")
    got = preprocess(image, spec)
    assert got.shape == (3, 32, 32)
    expected = [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    np.testing.assert_allclose(got[:, 5, 5], expected, atol=1e-5)


def test_bicubic_and_bilinear_give_different_tensors() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    bicubic = preprocess(image, PreprocessSpec(size=64, interpolation="bicubic"))
    bilinear = preprocess(image, PreprocessSpec(size=64, interpolation="bilinear"))
    assert np.abs(bicubic - bilinear).max() > 0.05


def test_antialiasing_on_downscale() -> None:
    """A fine checkerboard must average to grey, not alias into black/white blocks."""
    board = (np.indices((512, 512)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([board] * 3, axis=-1))
    out = np.asarray(resize_and_crop(image, PreprocessSpec(size=64, resize="squash")), dtype=np.float64)
    assert abs(out.mean() - 127.5) < 2 and out.std() < 5


def test_no_rescale_no_normalise_keeps_raw_values() -> None:
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    spec = PreprocessSpec(size=8, resize="squash", do_rescale=False, do_normalize=False)
    np.testing.assert_array_equal(preprocess(image, spec)[:, 0, 0], [10, 20, 30])


def test_do_resize_off_requires_model_size() -> None:
    spec = PreprocessSpec(size=8, do_resize=False)
    assert preprocess(Image.new("RGB", (8, 8)), spec).shape == (3, 8, 8)
    with pytest.raises(ConfigError, match="do_resize is off"):
        preprocess(Image.new("RGB", (9, 8)), spec)


def test_batch_matches_single() -> None:
    images = [Image.new("RGB", (50 + i * 10, 40), (i * 40, 0, 0)) for i in range(3)]
    spec = PreprocessSpec(size=16)
    batch = preprocess_batch(images, spec)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i], preprocess(image, spec))


@pytest.mark.parametrize(
    "bad",
    [
        {"size": 0},
        {"crop_pct": 0},
        {"crop_pct": 1.5},
        {"interpolation": "cubic-ish"},
        {"resize": "stretch"},
        {"mean": (0.1, 0.2)},
        {"std": (0.0, 1.0, 1.0)},
    ],
)
def test_invalid_specs_are_refused(bad) -> None:
    with pytest.raises(ConfigError):
        PreprocessSpec(**bad)


def test_round_trip_through_dict() -> None:
    spec = lite0_spec()
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown preprocessing keys"):
        PreprocessSpec.from_dict({**spec.to_dict(), "colour": "blue"})


@pytest.mark.parametrize("resize", ["crop", "squash", "squash_crop"])
def test_crop_window_resize_matches_resize_then_crop(resize) -> None:
    from skimage import data

    # A real photo upscaled to camera size: the window path resamples only the crop.
    photo = Image.fromarray(data.astronaut()).resize((1900, 1266), Image.Resampling.BICUBIC)
    spec = PreprocessSpec(size=224, crop_pct=0.875, resize=resize, interpolation="bicubic")
    full = np.asarray(resize_and_crop(photo, spec), dtype=np.int16)
    window = np.asarray(resize_and_crop(photo, spec, window=True), dtype=np.int16)
    assert window.shape == full.shape == (224, 224, 3)
    difference = np.abs(full - window)
    # Same filter and grid: only float rounding differs, by one level on a handful of values.
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 1e-3 * difference.size


def test_crop_window_is_a_real_crop_not_a_shrunken_image() -> None:
    # Left half black, right half white: the centre crop of a wide image must keep the edge centred,
    # where squeezing the whole image into the output would move it.
    image = Image.new("RGB", (1200, 400), "black")
    image.paste((255, 255, 255), (600, 0, 1200, 400))
    spec = PreprocessSpec(size=224, crop_pct=0.875)
    window = np.asarray(resize_and_crop(image, spec, window=True))
    assert window[:, :100].max() < 10 and window[:, 124:].min() > 245


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


CASES = [((500, 375), "crop", f) for f in ("bilinear", "lanczos", "hamming", "box")] + [
    (size, resize, "bicubic")
    for size in [(500, 375), (375, 500), (1280, 854), (200, 150)]
    for resize in ("crop", "squash", "squash_crop")
]


@pytest.mark.parametrize(("size", "resize", "interpolation"), CASES)
def test_numpy_resampler_matches_pillows_crop_window(astronaut, size, resize, interpolation) -> None:
    """resample_crop (the fast mode) computes Pillow's crop-window resize with BLAS: same filter,
    centres and rounding between the passes, so the values match but for one grey level on a few of
    them (Pillow's fixed-point weights vs float: measured at most 1 in 10,000 for bicubic, 3 in 1,000
    for bilinear) — ImageNet-sized photos both ways up, a JPEG after a draft halving, an upscale."""
    image = astronaut.resize(size, Image.Resampling.LANCZOS)
    spec = PreprocessSpec(
        size=224, resize=resize, interpolation=interpolation, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    pillow = preprocess(image, spec, window=True)
    numpy = resample_crop(image, spec)
    assert numpy.shape == (3, 224, 224) and numpy.dtype == np.float32
    levels = np.abs(numpy - pillow) * 127.5
    assert levels.max() <= 1 + 1e-4
    # bilinear and hamming weights often land near a half level, where fixed point and float round apart
    assert np.mean(levels > 1e-3) <= (2e-4 if interpolation in ("bicubic", "lanczos", "box") else 4e-3)


def test_numpy_resampler_normalises_like_the_pillow_path(astronaut) -> None:
    spec = PreprocessSpec(size=64, crop_pct=0.9)  # ImageNet mean/std
    out = np.empty((3, 64, 64), np.float32)
    got = preprocess(astronaut, spec, out=out, fast=True)
    assert got is out
    np.testing.assert_allclose(got, preprocess(astronaut, spec, window=True), atol=1.01 / 255 / 0.224)


def test_numpy_resampler_falls_back_to_pillow_where_it_has_no_plan(astronaut) -> None:
    nearest = PreprocessSpec(size=64, interpolation="nearest")
    np.testing.assert_array_equal(
        resample_crop(astronaut, nearest), preprocess(astronaut, nearest, window=True)
    )
    # A crop window above a megapixel (a large PNG): Pillow's window path, same values.
    big = astronaut.resize((2400, 2400))
    spec = PreprocessSpec(size=224)
    np.testing.assert_array_equal(resample_crop(big, spec), preprocess(big, spec, window=True))
    with pytest.raises(ConfigError, match="RGB"):
        resample_crop(astronaut.convert("L"), spec)


def test_numpy_resampler_is_thread_safe(astronaut) -> None:
    """Each thread has its own scratch buffers: images of different sizes resampled at once in
    several threads give what they give one at a time."""
    spec = PreprocessSpec(size=96)
    images = [astronaut.resize((300 + 37 * i, 200 + 23 * i)) for i in range(8)]
    alone = [resample_crop(image, spec) for image in images]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda image: resample_crop(image, spec), images))
            for a, b in zip(alone, together):
                np.testing.assert_array_equal(a, b)
