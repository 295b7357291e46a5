"""Decoding: formats, pixel modes, EXIF orientation, errors, folder scans and Spark image rows.

Every input is generated here with Pillow (from scikit-image's real photos where the content matters),
and every expectation is computed independently of the code under test (numpy arithmetic, or the
pixels we encoded), so a wrong conversion fails a test.
"""

from __future__ import annotations

import io
import os
import re
import struct
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, features
from skimage import data as skdata

from sparkvision import images
from sparkvision.errors import (
    ConfigError,
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageUnavailableError,
    InputNotFoundError,
    TruncatedImageError,
    UnsupportedImageError,
)
from sparkvision.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    decode_bgr_struct,
    decode_image,
    iter_image_files,
)

# --------------------------------------------------------------------------------------------------
# helpers and shared images
# --------------------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def pixels(decoded: DecodedImage) -> np.ndarray:
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image).astype(np.int32)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def photo_96x64(astronaut) -> np.ndarray:
    """A real photo, non-square (so transposition shows), reduced to 64 colours so GIF/PCX are exact."""
    small = Image.fromarray(astronaut).resize((96, 64), Image.Resampling.BICUBIC)
    return np.asarray(small.quantize(64).convert("RGB"))


def quadrants(width: int = 48, height: int = 32) -> np.ndarray:
    """An asymmetric test card: four solid, distinct quadrants (robust to JPEG)."""
    a = np.zeros((height, width, 3), dtype=np.uint8)
    h2, w2 = height // 2, width // 2
    a[:h2, :w2] = (230, 30, 30)  # top-left red
    a[:h2, w2:] = (30, 200, 40)  # top-right green
    a[h2:, :w2] = (30, 40, 220)  # bottom-left blue
    a[h2:, w2:] = (240, 230, 40)  # bottom-right yellow
    return a


def composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.rint(rgb.astype(np.float64) * a + 255.0 * (1.0 - a)).astype(np.int32)


# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------

LOSSLESS = [
    ("PNG", ".png", {}),
    ("GIF", ".gif", {}),
    ("BMP", ".bmp", {}),
    ("TIFF", ".tif", {}),
    ("TIFF", ".tiff", {"compression": "tiff_lzw"}),
    ("PPM", ".ppm", {}),
    ("WEBP", ".webp", {"lossless": True}),
    ("QOI", ".qoi", {}),
    ("TGA", ".tga", {}),
    ("PCX", ".pcx", {}),
    ("SGI", ".sgi", {}),
    ("DDS", ".dds", {}),
    ("JPEG2000", ".jp2", {"irreversible": False}),
]


@pytest.mark.parametrize(("fmt", "suffix", "params"), LOSSLESS, ids=[f"{f}{s}" for f, s, _ in LOSSLESS])
def test_lossless_formats_round_trip_exactly(tmp_path, photo_96x64, fmt, suffix, params):
    encoded = encode(Image.fromarray(photo_96x64), fmt, **params)
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(encoded)
    assert suffix in IMAGE_EXTENSIONS
    for source in (path, str(path), encoded):
        d = decode_image(source)
        assert (d.width, d.height) == (96, 64)
        assert d.format == fmt
        np.testing.assert_array_equal(pixels(d), photo_96x64)


LOSSY = [
    ("JPEG", ".jpg", {"quality": 95}, 3.0),
    ("WEBP", ".webp", {"quality": 95}, 4.0),
    pytest.param(
        "AVIF",
        ".avif",
        {"quality": 95},
        4.0,
        marks=pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF"),
    ),
]


@pytest.mark.parametrize(("fmt", "suffix", "params", "mean_tol"), LOSSY)
def test_lossy_formats_round_trip_within_codec_tolerance(tmp_path, astronaut, fmt, suffix, params, mean_tol):
    img = Image.fromarray(astronaut[:300, :400])
    path = tmp_path / f"astronaut{suffix}"
    path.write_bytes(encode(img, fmt, **params))
    d = decode_image(path)
    assert (d.width, d.height, d.format) == (400, 300, fmt)
    err = np.abs(pixels(d) - astronaut[:300, :400])
    assert err.mean() < mean_tol, err.mean()


def test_ico_decodes_its_largest_entry(photo_96x64):
    square = photo_96x64[:, :64]
    d = decode_image(encode(Image.fromarray(square), "ICO", sizes=[(16, 16), (64, 64)]))
    assert (d.width, d.height, d.format) == (64, 64, "ICO")
    np.testing.assert_array_equal(pixels(d), square)


def test_every_saveable_extension_is_picked_up_from_a_folder_and_decodes(tmp_path, photo_96x64):
    img = Image.fromarray(photo_96x64)
    written = {}
    for fmt, suffix, params in LOSSLESS:
        name = f"img_{fmt.lower()}{suffix}"
        (tmp_path / name).write_bytes(encode(img, fmt, **params))
        written[name] = fmt
    (tmp_path / "notes.txt").write_text("not an image")
    found = list(iter_image_files([tmp_path]))
    assert [p.name for p in found] == sorted(written)
    for p in found:
        assert decode_image(p).format == written[p.name]


def test_image_extensions_cover_the_common_formats_and_skip_undecodable_ones():
    for ext in (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".tif", ".tiff"):
        assert ext in IMAGE_EXTENSIONS
    for ext in (".webp", ".mpo", ".ico", ".ppm", ".pgm", ".qoi", ".jp2", ".psd", ".tga"):
        assert ext in IMAGE_EXTENSIONS
    if features.check("avif"):
        assert ".avif" in IMAGE_EXTENSIONS
    # save-only (PDF), stub (HDF5, GRIB), identify-only video (MPEG), Ghostscript (EPS): not images here
    for ext in (".pdf", ".h5", ".grib", ".mpg", ".mpeg", ".eps", ".ps", ".txt"):
        assert ext not in IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------------------------------
# pixel modes
# --------------------------------------------------------------------------------------------------


def test_gray_L_is_replicated(astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    d = decode_image(encode(Image.fromarray(gray), "PNG"))
    assert d.source_mode == "L"
    np.testing.assert_array_equal(pixels(d), np.repeat(gray[..., None], 3, axis=2))


def test_one_bit_image_is_black_and_white():
    bits = np.zeros((20, 30), dtype=bool)
    bits[5:15, 10:20] = True
    d = decode_image(encode(Image.fromarray(bits).convert("1"), "PNG"))
    assert d.source_mode == "1"
    expected = np.where(bits, 255, 0)[..., None].repeat(3, axis=2)
    np.testing.assert_array_equal(pixels(d), expected)


def test_LA_alpha_is_composited_on_white():
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # 16×64
    alpha = np.repeat(np.array([0, 64, 128, 255], dtype=np.uint8), 16)[None, :].repeat(16, axis=0)
    la = Image.fromarray(np.dstack([gray, alpha]), "LA")
    d = decode_image(encode(la, "PNG"))
    assert d.source_mode == "LA"
    expected = composite_on_white(np.dstack([gray] * 3), alpha)
    assert np.abs(pixels(d) - expected).max() <= 1
    assert (pixels(d)[:, :16] == 255).all()  # fully transparent → white whatever the gray value


def test_RGBA_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(astronaut):
    rgb = astronaut[:64, :64]
    alpha = np.zeros((64, 64), dtype=np.uint8)
    alpha[:, 16:32] = 100
    alpha[:, 32:] = 255
    d = decode_image(encode(Image.fromarray(np.dstack([rgb, alpha])), "PNG"))
    assert d.source_mode == "RGBA"
    out = pixels(d)
    assert (out[:, :16] == 255).all()
    np.testing.assert_array_equal(out[:, 32:], rgb[:, 32:])
    assert np.abs(out - composite_on_white(rgb, alpha)).max() <= 1


def test_palette_without_transparency_is_looked_up(photo_96x64):
    p_img = Image.fromarray(photo_96x64).quantize(64)
    assert "transparency" not in p_img.info
    d = decode_image(encode(p_img, "PNG"))
    assert d.source_mode == "P"
    np.testing.assert_array_equal(pixels(d), photo_96x64)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_index_becomes_white(fmt):
    idx = np.zeros((10, 20), dtype=np.uint8)
    idx[:, 10:] = 1
    p_img = Image.fromarray(idx, "P")
    p_img.putpalette([0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 6))  # index 0 black, 1 red
    d = decode_image(encode(p_img, fmt, transparency=0))
    assert d.source_mode == "P"
    out = pixels(d)
    assert (out[:, :10] == 255).all()  # the black index is transparent → white, not black
    assert (out[:, 10:] == (200, 30, 30)).all()


def test_palette_with_partial_alpha_tRNS_is_composited():
    idx = np.repeat(np.arange(3, dtype=np.uint8), 4)[None, :].repeat(4, axis=0)  # 4×12
    p_img = Image.fromarray(idx, "P")
    p_img.putpalette([0, 0, 0, 0, 0, 255, 10, 200, 10] + [0] * (253 * 3))
    # tRNS with one alpha per palette entry: 0 (clear), 128 (half), 255 (opaque)
    d = decode_image(encode(p_img, "PNG", transparency=bytes([0, 128, 255])))
    out = pixels(d)
    assert (out[:, 0:4] == 255).all()
    assert np.abs(out[:, 4:8] - np.array([127, 127, 255])).max() <= 1
    assert (out[:, 8:12] == (10, 200, 10)).all()


def test_PA_mode_from_tiff_and_from_a_pil_image():
    idx = np.repeat(np.arange(2, dtype=np.uint8), 5)[None, :].repeat(3, axis=0)  # 3×10
    alpha = np.full((3, 10), 255, dtype=np.uint8)
    alpha[:, :5] = 0
    p_img = Image.fromarray(idx, "P")
    p_img.putpalette([10, 20, 30, 40, 50, 60] + [0] * (254 * 3))
    pa = p_img.convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    assert pa.mode == "PA"
    for source in (pa, encode(pa, "TIFF")):
        d = decode_image(source)
        assert d.source_mode == "PA"
        out = pixels(d)
        assert (out[:, :5] == 255).all()
        assert (out[:, 5:] == (40, 50, 60)).all()


def test_RGB_with_a_colour_key_treats_the_key_as_transparent():
    rgb = np.zeros((4, 8, 3), dtype=np.uint8)
    rgb[:, 4:] = (9, 99, 199)
    d = decode_image(encode(Image.fromarray(rgb), "PNG", transparency=(0, 0, 0)))
    out = pixels(d)
    assert (out[:, :4] == 255).all()
    assert (out[:, 4:] == (9, 99, 199)).all()


@pytest.mark.parametrize("mode", ["RGBX", "RGBa", "La", "HSV"])
def test_in_memory_modes_convert_to_the_same_colours_as_rgb(photo_96x64, mode):
    if mode == "La":
        gray = np.asarray(Image.fromarray(photo_96x64).convert("L"))
        src = Image.fromarray(gray).convert("LA").convert("La")
        expected = np.repeat(gray[..., None], 3, axis=2)
    else:
        src = Image.fromarray(photo_96x64).convert(mode)
        expected = photo_96x64
    d = decode_image(src)
    assert d.source_mode == mode and d.format is None
    tol = 3 if mode == "HSV" else 0  # HSV quantises hue to 8 bits
    assert np.abs(pixels(d) - expected).max() <= tol


def test_red_cmyk_jpeg_decodes_to_red():
    cmyk = Image.new("RGB", (32, 24), (255, 0, 0)).convert("CMYK")
    d = decode_image(encode(cmyk, "JPEG", quality=95))
    assert d.source_mode == "CMYK"
    r, g, b = pixels(d).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15, (r, g, b)


def test_cmyk_photo_tiff_keeps_its_colours(photo_96x64):
    d = decode_image(encode(Image.fromarray(photo_96x64).convert("CMYK"), "TIFF"))
    assert d.source_mode == "CMYK"
    assert np.abs(pixels(d) - photo_96x64).max() <= 1


def test_lab_tiff_decodes_to_the_original_colours(astronaut):
    rgb = astronaut[::4, ::4]
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(Image.fromarray(rgb), to_lab)
    d = decode_image(encode(lab, "TIFF"))
    assert d.source_mode == "LAB"
    err = np.abs(pixels(d) - rgb)
    assert err.mean() < 1.5 and err.max() <= 12, (err.mean(), err.max())


def test_ycbcr_tiff_decodes_to_rgb(photo_96x64):
    d = decode_image(encode(Image.fromarray(photo_96x64).convert("YCbCr"), "TIFF"))
    assert d.source_mode == "YCbCr"
    assert np.abs(pixels(d) - photo_96x64).mean() < 1.5


def sixteen_bit_ramp() -> tuple[np.ndarray, np.ndarray]:
    """16-bit data v = 257·k (the exact 8→16-bit widening) plus a few in-between values."""
    k = np.arange(256, dtype=np.uint16).reshape(16, 16)
    values = k * 257
    values[0, 1] = 1000  # 1000 / 257 = 3.89 → 4; clipping to 8 bits would give 255
    expected = k.astype(np.int32)
    expected[0, 1] = 4
    return values, expected


@pytest.mark.parametrize(("fmt", "dtype"), [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")])
def test_16_bit_gray_is_scaled_by_its_full_range(fmt, dtype):
    values, expected = sixteen_bit_ramp()
    img = Image.fromarray(values.astype(dtype))
    assert img.mode in ("I;16", "I;16B")
    d = decode_image(encode(img, fmt))
    assert d.source_mode == img.mode
    np.testing.assert_array_equal(pixels(d)[..., 0], expected)
    np.testing.assert_array_equal(pixels(d)[..., 2], expected)


def test_32_bit_int_in_16_bit_range_is_treated_as_16_bit():
    values, expected = sixteen_bit_ramp()
    img = Image.fromarray(values.astype(np.int32))
    assert img.mode == "I"
    d = decode_image(encode(img, "TIFF"))
    assert d.source_mode == "I"
    np.testing.assert_array_equal(pixels(d)[..., 1], expected)


def test_32_bit_int_outside_16_bit_range_is_stretched_min_to_max():
    values = np.array([[-1000, 0, 100_000, 199_000]], dtype=np.int32)
    d = decode_image(Image.fromarray(values))
    np.testing.assert_array_equal(pixels(d)[0, :, 0], np.rint((values[0] + 1000) * 255 / 200_000))


def test_float_in_unit_range_is_scaled_and_other_floats_are_clipped():
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    d = decode_image(encode(Image.fromarray(unit), "TIFF"))
    assert d.source_mode == "F"
    np.testing.assert_array_equal(pixels(d)[..., 0], np.rint(unit * 255))

    wide = np.array([[-5.0, 0.4, 100.6, 300.0, np.nan]], dtype=np.float32)
    d = decode_image(Image.fromarray(wide))
    np.testing.assert_array_equal(pixels(d)[0, :, 0], [0, 0, 101, 255, 0])


# --------------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------------

ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),  # rotate 90° clockwise to display
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),  # rotate 90° counter-clockwise to display
}


def with_orientation(a: np.ndarray, orientation: int, fmt: str, **params) -> bytes:
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **params)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    card = quadrants(48, 32)
    d = decode_image(with_orientation(card, orientation, "PNG"))
    expected = ORIENTED[orientation](card)
    assert (d.width, d.height) == (expected.shape[1], expected.shape[0])
    np.testing.assert_array_equal(pixels(d), expected)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_in_a_jpeg(orientation):
    card = quadrants(48, 32)
    d = decode_image(with_orientation(card, orientation, "JPEG", quality=95))
    assert (d.width, d.height) == (32, 48)
    assert np.abs(pixels(d) - ORIENTED[orientation](card)).mean() < 4


def test_exif_orientation_of_an_opened_pil_image_is_applied_without_changing_it():
    card = quadrants(48, 32)
    src = Image.open(io.BytesIO(with_orientation(card, 6, "PNG")))
    d = decode_image(src)
    np.testing.assert_array_equal(pixels(d), ORIENTED[6](card))
    assert src.size == (48, 32) and d.image is not src


def test_damaged_exif_does_not_fail_the_image():
    card = quadrants(48, 32)
    d = decode_image(encode(Image.fromarray(card), "JPEG", quality=95, exif=b"Exif\x00\x00II*\x00\xff\xff"))
    assert (d.width, d.height) == (48, 32)


# --------------------------------------------------------------------------------------------------
# animations and multi-frame files: the first frame
# --------------------------------------------------------------------------------------------------

FRAME_COLOURS = [(200, 20, 20), (20, 200, 20), (20, 20, 200)]


def frames() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), c) for c in FRAME_COLOURS]


ANIMATED = [
    ("GIF", {}, 0),
    ("PNG", {}, 0),  # APNG
    ("WEBP", {"lossless": True}, 0),
    ("TIFF", {}, 0),
    ("MPO", {"quality": 95}, 6),
    pytest.param(
        "AVIF",
        {"quality": 95},
        8,
        marks=pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF"),
    ),
]


@pytest.mark.parametrize(("fmt", "params", "tol"), ANIMATED)
def test_multi_frame_files_decode_their_first_frame(fmt, params, tol):
    first, *rest = frames()
    encoded = encode(first, fmt, save_all=True, append_images=rest, **params)
    with Image.open(io.BytesIO(encoded)) as check:
        assert getattr(check, "n_frames", 1) == 3
    d = decode_image(encoded)
    assert d.format == fmt
    assert (d.width, d.height) == (40, 30)
    assert np.abs(pixels(d) - np.array(FRAME_COLOURS[0])).max() <= tol


# --------------------------------------------------------------------------------------------------
# other inputs: bytes-likes, PIL images, arrays
# --------------------------------------------------------------------------------------------------


def test_bytes_like_inputs_decode_the_same(photo_96x64):
    encoded = encode(Image.fromarray(photo_96x64), "PNG")
    for source in (encoded, bytearray(encoded), memoryview(encoded)):
        np.testing.assert_array_equal(pixels(decode_image(source)), photo_96x64)


def test_non_contiguous_memoryview_is_accepted(photo_96x64):
    encoded = encode(Image.fromarray(photo_96x64), "PNG")
    doubled = np.repeat(np.frombuffer(encoded, dtype=np.uint8), 2)
    strided = memoryview(doubled)[::2]  # every other byte: the PNG again, but not contiguous
    assert not strided.c_contiguous
    np.testing.assert_array_equal(pixels(decode_image(strided)), photo_96x64)


def test_pil_rgb_input_is_copied_not_shared(photo_96x64):
    src = Image.fromarray(photo_96x64)
    d = decode_image(src)
    assert d.image is not src and d.format is None and d.source_mode == "RGB"
    d.image.putpixel((0, 0), (1, 2, 3))
    assert src.getpixel((0, 0)) == tuple(photo_96x64[0, 0])


def test_arrays_gray_rgb_rgba_float_uint16_bool(photo_96x64):
    gray = photo_96x64[..., 0]
    np.testing.assert_array_equal(pixels(decode_image(gray)), np.dstack([gray] * 3))
    np.testing.assert_array_equal(pixels(decode_image(gray[..., None])), np.dstack([gray] * 3))
    np.testing.assert_array_equal(pixels(decode_image(photo_96x64)), photo_96x64)
    # a non-contiguous view (every other column) works too
    view = photo_96x64[:, ::2]
    np.testing.assert_array_equal(pixels(decode_image(view)), view)

    alpha = np.zeros(gray.shape, dtype=np.uint8)
    alpha[:, 48:] = 255
    d = decode_image(np.dstack([photo_96x64, alpha]))
    assert d.source_mode == "RGBA" and (d.width, d.height) == (96, 64) and d.format is None
    assert (pixels(d)[:, :48] == 255).all()
    np.testing.assert_array_equal(pixels(d)[:, 48:], photo_96x64[:, 48:])

    unit = photo_96x64.astype(np.float32) / 255.0
    np.testing.assert_array_equal(pixels(decode_image(unit)), photo_96x64)
    np.testing.assert_array_equal(pixels(decode_image(photo_96x64.astype(np.uint16) * 257)), photo_96x64)
    mask = gray > 128
    np.testing.assert_array_equal(pixels(decode_image(mask))[..., 0], np.where(mask, 255, 0))


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros(16, np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.full((4, 4, 3), 200.0), "[0, 1]"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.zeros((4, 4), np.int64), "dtype"),
        (np.zeros((4, 4), np.complex64), "dtype"),
    ],
)
def test_bad_arrays_raise_decode_errors(array, needle):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(array)
    assert needle in str(info.value)


@pytest.mark.parametrize(("source", "needle"), [(None, "None"), (42, "int"), (["a.jpg"], "list")])
def test_unsupported_input_types_are_decode_errors(source, needle):
    with pytest.raises(ImageDecodeError, match=needle):
        decode_image(source)


def test_bad_options_are_config_errors(photo_96x64):
    for kwargs in ({"max_pixels": 0}, {"max_pixels": -5}, {"min_short_side": 0}, {"min_short_side": 2.5}):
        with pytest.raises(ConfigError):
            decode_image(photo_96x64, **kwargs)


# --------------------------------------------------------------------------------------------------
# bad input → ImageDecodeError naming the problem
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_jpeg(astronaut) -> bytes:
    return encode(Image.fromarray(astronaut), "JPEG", quality=90)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_jpeg_is_refused_not_grey_filled(tmp_path, astronaut_jpeg, fraction):
    path = tmp_path / "cut.jpg"
    path.write_bytes(astronaut_jpeg[: int(len(astronaut_jpeg) * fraction)])
    with pytest.raises(TruncatedImageError, match="truncated"):
        decode_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # we never switch on grey-filling


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_png_is_refused(astronaut, fraction):
    encoded = encode(Image.fromarray(astronaut), "PNG")
    with pytest.raises(TruncatedImageError, match="truncated"):
        decode_image(encoded[: int(len(encoded) * fraction)])


def test_zero_byte_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageUnavailableError, match=r"empty \(0 bytes\)"):
        decode_image(empty)
    with pytest.raises(ImageUnavailableError, match="empty"):
        decode_image(b"")


def test_text_file_named_jpg_is_not_an_image(tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("Dear diary, today I took no photos.\n")
    with pytest.raises(UnsupportedImageError, match="not a recognised image format"):
        decode_image(fake)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageUnavailableError, match="file not found"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageUnavailableError, match="is a directory"):
        decode_image(tmp_path)
    link = tmp_path / "dangling.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(link)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_image(fifo)


def test_unreadable_file_reports_permission(tmp_path, monkeypatch, astronaut_jpeg):
    path = tmp_path / "secret.jpg"
    path.write_bytes(astronaut_jpeg)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # As root chmod cannot deny reading, so simulate the open() failure the OS would give.
    monkeypatch.setattr(images, "open", deny, raising=False)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        decode_image(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_reports_permission_for_real(tmp_path, astronaut_jpeg):
    path = tmp_path / "secret.jpg"
    path.write_bytes(astronaut_jpeg)
    path.chmod(0)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        decode_image(path)


def png_with_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width×height`` RGB: a decompression bomb's calling card."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" + b"\x00" * (3 * min(width, 1000)), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_decompression_bomb_beyond_pillows_limit_is_refused_quickly():
    bomb = png_with_header_only(100_000, 100_000)
    assert len(bomb) < 200
    before = Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode_image(bomb)
    assert time.perf_counter() - start < 0.5
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's global is left alone


def test_image_over_our_limit_is_refused_from_its_header_without_warnings():
    bomb = png_with_header_only(10_000, 10_000)  # 100 M pixels: over ours, under 2× Pillow's
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak out
        with pytest.raises(ImageDecodeError, match=r"10000×10000 = 100,000,000 pixels.*89,478,485"):
            decode_image(bomb)
    assert DEFAULT_MAX_PIXELS < 10_000 * 10_000


def test_max_pixels_is_a_per_call_limit(photo_96x64):
    encoded = encode(Image.fromarray(photo_96x64), "PNG")
    with pytest.raises(ImageDecodeError, match="96×64 = 6,144 pixels"):
        decode_image(encoded, max_pixels=6_143)
    assert decode_image(encoded, max_pixels=6_144).width == 96
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(photo_96x64, max_pixels=100)
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(Image.fromarray(photo_96x64), max_pixels=100)


def test_damaged_headers_name_the_format_they_claim(astronaut_jpeg):
    png = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    png[12:16] = b"XXXX"  # the IHDR chunk type
    with pytest.raises(CorruptImageError, match="corrupt PNG header"):
        decode_image(bytes(png))
    with pytest.raises(CorruptImageError, match="corrupt GIF header"):
        decode_image(b"GIF89a\x00")
    with pytest.raises(ImageDecodeError, match="truncated image header"):
        decode_image(astronaut_jpeg[:40])


def test_corrupt_middle_of_a_png_is_a_decode_error(astronaut):
    encoded = bytearray(encode(Image.fromarray(astronaut[:128, :128]), "PNG"))
    idat = encoded.index(b"IDAT")
    encoded[idat + 40 : idat + 200] = os.urandom(160)
    with pytest.raises(ImageDecodeError):
        decode_image(bytes(encoded))


# --------------------------------------------------------------------------------------------------
# draft decoding of large JPEGs
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg(astronaut) -> bytes:
    big = Image.fromarray(astronaut).resize((4000, 3000), Image.Resampling.BILINEAR)
    return encode(big, "JPEG", quality=90)


def test_draft_keeps_true_size_and_the_short_side_above_the_hint(big_jpeg):
    full = decode_image(big_jpeg)
    fast = decode_image(big_jpeg, min_short_side=256)
    assert (full.width, full.height) == (fast.width, fast.height) == (4000, 3000)
    assert full.image.size == (4000, 3000)
    # 3000 // 256 = 11 → the largest DCT scale allowed is 1/8: 500×375, short side 375 ≥ 256
    assert fast.image.size == (500, 375)
    fast_700 = decode_image(big_jpeg, min_short_side=700)  # 3000 // 700 = 4 → 1/4
    assert fast_700.image.size == (1000, 750)
    # Same picture: the reduced decode matches a full decode shrunk to the same size.
    reference = np.asarray(full.image.resize(fast.image.size, Image.Resampling.BOX)).astype(np.int32)
    assert np.abs(pixels(fast) - reference).mean() < 3


def test_draft_is_skipped_when_the_image_is_already_small(astronaut_jpeg):
    d = decode_image(astronaut_jpeg, min_short_side=300)  # 512 < 2·300: no reduction possible
    assert d.image.size == (512, 512)


def test_draft_respects_exif_rotation():
    card = np.asarray(Image.fromarray(quadrants(48, 32)).resize((2400, 1600), Image.Resampling.NEAREST))
    d = decode_image(with_orientation(card, 6, "JPEG", quality=90), min_short_side=200)
    assert (d.width, d.height) == (1600, 2400)
    assert d.image.size == (200, 300)  # 1600 // 200 = 8 → 1/8, then rotated
    small = np.asarray(Image.fromarray(ORIENTED[6](card)).resize((200, 300), Image.Resampling.BOX))
    assert np.abs(pixels(d) - small.astype(np.int32)).mean() < 4


# --------------------------------------------------------------------------------------------------
# thread safety
# --------------------------------------------------------------------------------------------------


def test_concurrent_decoding_gives_the_same_results(photo_96x64, astronaut_jpeg):
    sources = [
        encode(Image.fromarray(photo_96x64), "PNG"),
        astronaut_jpeg,
        b"garbage",
        png_with_header_only(10_000, 10_000),
        encode(Image.fromarray(photo_96x64), "GIF"),
    ] * 8

    def outcome(source):
        try:
            return pixels(decode_image(source)).sum()
        except ImageDecodeError as exc:
            return str(exc)

    sequential = [outcome(s) for s in sources]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(outcome, sources)) == sequential


# --------------------------------------------------------------------------------------------------
# Spark image rows
# --------------------------------------------------------------------------------------------------


def test_spark_bgr_row_converts_to_rgb(photo_96x64):
    bgr = np.ascontiguousarray(photo_96x64[..., ::-1]).tobytes()
    d = decode_bgr_struct(64, 96, 3, 16, bgr)
    assert (d.width, d.height, d.source_mode, d.format) == (96, 64, "BGR", None)
    np.testing.assert_array_equal(pixels(d), photo_96x64)
    np.testing.assert_array_equal(pixels(decode_bgr_struct(64, 96, 3, 16, bytearray(bgr))), photo_96x64)


def test_spark_bgra_row_composites_alpha_on_white(photo_96x64):
    alpha = np.full((64, 96), 255, dtype=np.uint8)
    alpha[:, :10] = 0
    alpha[:, 10:20] = 128
    bgra = np.dstack([photo_96x64[..., ::-1], alpha]).tobytes()
    d = decode_bgr_struct(64, 96, 4, 24, bgra)
    assert d.source_mode == "BGRA"
    out = pixels(d)
    assert (out[:, :10] == 255).all()
    np.testing.assert_array_equal(out[:, 20:], photo_96x64[:, 20:])
    assert np.abs(out - composite_on_white(photo_96x64, alpha)).max() <= 1


def test_spark_row_data_may_be_a_strided_memoryview(photo_96x64):
    bgr = np.ascontiguousarray(photo_96x64[..., ::-1]).reshape(-1)
    strided = memoryview(np.repeat(bgr, 2))[::2]
    np.testing.assert_array_equal(pixels(decode_bgr_struct(64, 96, 3, 16, strided)), photo_96x64)


def test_spark_gray_row_is_replicated(photo_96x64):
    gray = photo_96x64[..., 1]
    d = decode_bgr_struct(64, 96, 1, 0, gray.tobytes())
    np.testing.assert_array_equal(pixels(d), np.dstack([gray] * 3))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((64, 96, 3, 16, b"\x00" * 10), "needs 18,432"),
        ((64, 96, 4, 16, b"\x00" * (64 * 96 * 4)), "3 channel"),
        ((-1, -1, -1, -1, b""), "Spark could not decode"),
        ((4, 4, 2, 8, b"\x00" * 32), "unsupported Spark image mode 8"),
        ((0, 4, 1, 0, b""), "no pixels"),
        ((2, 2, 1, 0, "abcd"), "bytes"),
    ],
)
def test_bad_spark_rows_raise_decode_errors(args, needle):
    with pytest.raises(ImageDecodeError, match=needle):
        decode_bgr_struct(*args)


# --------------------------------------------------------------------------------------------------
# iter_image_files
# --------------------------------------------------------------------------------------------------


def touch_images(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def tree(tmp_path) -> Path:
    touch_images(
        tmp_path,
        "b.jpg",
        "a.PNG",
        "Z.gif",
        "c.txt",
        "README",
        ".hidden.jpg",
        "._b.jpg",
        "sub/d.jpeg",
        "sub/deeper/e.webp",
        "sub/notes.md",
        "c_dir/f.tif",
        ".git/objects/g.png",
    )
    return tmp_path


def names(paths, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_folder_scan_is_sorted_filtered_and_skips_hidden(tree):
    assert names(iter_image_files([tree]), tree) == ["Z.gif", "a.PNG", "b.jpg"]


def test_recursive_scan_interleaves_folders_by_name(tree):
    assert names(iter_image_files([tree], recursive=True), tree) == [
        "Z.gif",
        "a.PNG",
        "b.jpg",
        "c_dir/f.tif",
        "sub/d.jpeg",
        "sub/deeper/e.webp",
    ]


def test_explicit_files_are_always_yielded_in_order(tree):
    odd = [tree / "c.txt", tree / "missing.jpg", tree / "README", tree / "b.jpg"]
    assert list(iter_image_files(odd)) == odd
    # files and folders mixed keep the order given
    out = names(iter_image_files([tree / "README", tree / "sub", tree / "b.jpg"]), tree)
    assert out == ["README", "sub/d.jpeg", "b.jpg"]


def test_a_single_path_is_accepted_as_one_item(tree):
    assert names(iter_image_files(str(tree)), tree) == ["Z.gif", "a.PNG", "b.jpg"]
    assert names(iter_image_files(tree / "sub"), tree) == ["sub/d.jpeg"]


def test_empty_folder_raises_after_scanning(tmp_path):
    with pytest.raises(InputNotFoundError, match="no image files in"):
        list(iter_image_files([tmp_path]))


def test_folder_with_only_subfolders_hints_at_recursive(tmp_path):
    touch_images(tmp_path, "2024/one.jpg", "notes.txt")
    with pytest.raises(InputNotFoundError) as info:
        list(iter_image_files([tmp_path]))
    message = str(info.value)
    assert "--recursive" in message and "1 subfolder" in message and "1 file(s) skipped" in message
    assert names(iter_image_files([tmp_path], recursive=True), tmp_path) == ["2024/one.jpg"]


def test_empty_folder_error_comes_after_earlier_paths_were_streamed(tree, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    stream = iter_image_files([tree, empty])
    got = [next(stream).name for _ in range(3)]
    assert got == ["Z.gif", "a.PNG", "b.jpg"]
    with pytest.raises(InputNotFoundError, match=re.escape(str(empty))):
        next(stream)


def test_symlink_loops_are_not_followed_forever(tree):
    (tree / "sub" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "alias").symlink_to(tree / "c_dir", target_is_directory=True)
    out = names(iter_image_files([tree], recursive=True), tree)
    assert out == [
        "Z.gif",
        "a.PNG",
        "alias/f.tif",  # a link to a folder elsewhere is followed like the folder itself
        "b.jpg",
        "c_dir/f.tif",
        "sub/d.jpeg",
        "sub/deeper/e.webp",
    ]  # and sub/loop (back to the root) is not followed at all


def test_unlistable_named_folder_raises_and_unlistable_subfolder_is_skipped(tree, monkeypatch, caplog):
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name in ("sub", "locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    # As root chmod cannot lock a folder, so simulate the listing failure the OS would give.
    monkeypatch.setattr(os, "scandir", scandir)
    locked = tree / "locked"
    locked.mkdir()
    with pytest.raises(InputNotFoundError, match=r"cannot list folder .*locked.*Permission denied"):
        list(iter_image_files([locked]))
    with caplog.at_level("WARNING", logger="sparkvision.images"):
        out = names(iter_image_files([tree], recursive=True), tree)
    assert out == ["Z.gif", "a.PNG", "b.jpg", "c_dir/f.tif"]
    assert "skipping folder" in caplog.text and "sub" in caplog.text


def test_scan_is_lazy(tree):
    stream = iter_image_files([tree], recursive=True)
    assert iter(stream) is stream
    assert next(stream).name == "Z.gif"
