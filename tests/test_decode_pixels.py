"""The fast mode's JPEG decoder (``images.decode_pixels``): plain JPEGs go straight from libjpeg-turbo
(``simplejpeg``) into an RGBX array. It must give Pillow's pixels and keep every guarantee of
``decode_image``: EXIF orientation, CMYK / grayscale / progressive files, the pixel limit from the
header, truncated or corrupt files refused (never padded), the true size reported, thread safety."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import skimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sparkvision import Classifier
from sparkvision.errors import ImageDecodeError, ImageTooLargeError, TruncatedImageError
from sparkvision.images import DecodedImage, DecodedPixels, decode_image, decode_pixels
from sparkvision.preprocess import resample_crop

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
SKIMAGE_JPEGS = [Path(skimage.__file__).parent / "data" / n for n in ("retina.jpg", "hubble_deep_field.jpg")]


def jpeg(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **{"quality": 90, **params})
    return buffer.getvalue()


def pillow_pixels(decoded: DecodedImage) -> np.ndarray:
    return np.asarray(decoded.image.convert("RGB"))


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.open(EXAMPLES / "chelsea.jpg").convert("RGB")


def test_real_jpegs_decode_to_pillows_pixels() -> None:
    """The same libjpeg-turbo code underneath: identical pixels, size, mode and format."""
    for path in [*sorted(EXAMPLES.glob("*.jpg")), *SKIMAGE_JPEGS]:
        fast, reference = decode_pixels(path), decode_image(path)
        assert isinstance(fast, DecodedPixels), path
        assert fast.pixels.shape[2] == 4 and fast.pixels.dtype == np.uint8
        np.testing.assert_array_equal(fast.pixels[:, :, :3], pillow_pixels(reference))
        np.testing.assert_array_equal(np.asarray(fast.image), pillow_pixels(reference))
        assert (fast.width, fast.height, fast.source_mode, fast.format) == (
            reference.width,
            reference.height,
            reference.source_mode,
            reference.format,
        )


@pytest.mark.parametrize(
    "params",
    [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2}, {"progressive": True}, {"quality": 40}],
    ids=["4:4:4", "4:2:2", "4:2:0", "progressive", "quality-40"],
)
def test_chroma_layouts_and_progressive_jpegs(chelsea: Image.Image, params: dict) -> None:
    data = jpeg(chelsea, **params)
    fast = decode_pixels(data)
    assert isinstance(fast, DecodedPixels)
    np.testing.assert_array_equal(fast.pixels[:, :, :3], pillow_pixels(decode_image(data)))


def test_grayscale_jpeg_becomes_rgb(chelsea: Image.Image) -> None:
    data = jpeg(chelsea.convert("L"))
    fast = decode_pixels(data)
    assert isinstance(fast, DecodedPixels) and fast.source_mode == "L"
    np.testing.assert_array_equal(fast.pixels[:, :, :3], pillow_pixels(decode_image(data)))


def test_cmyk_jpeg_takes_pillows_path(chelsea: Image.Image) -> None:
    data = jpeg(chelsea.convert("CMYK"))
    fast, reference = decode_pixels(data), decode_image(data)
    assert isinstance(fast, DecodedImage) and fast.source_mode == "CMYK"
    np.testing.assert_array_equal(pillow_pixels(fast), pillow_pixels(reference))


def test_mpo_first_frame(chelsea: Image.Image) -> None:
    buffer = io.BytesIO()
    chelsea.save(buffer, "MPO", save_all=True, append_images=[chelsea.rotate(90)], quality=90)
    data = buffer.getvalue()
    fast, reference = decode_pixels(data), decode_image(data)
    assert fast.format == reference.format == "MPO"
    np.testing.assert_array_equal(np.asarray(fast.image), pillow_pixels(reference))


def test_large_jpeg_at_pillows_draft_scale(chelsea: Image.Image) -> None:
    data = jpeg(chelsea.resize((2400, 1600)))
    for short_side in (256, 512, 700, 1600):
        fast = decode_pixels(data, min_short_side=short_side)
        reference = decode_image(data, min_short_side=short_side)
        assert fast.size == reference.size and fast.reduced == reference.reduced
        assert (fast.width, fast.height) == (2400, 1600)
        np.testing.assert_array_equal(fast.pixels[:, :, :3], pillow_pixels(reference))
    assert decode_pixels(data, min_short_side=256).size == (600, 400)  # a quarter: 400 >= 256


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(chelsea: Image.Image, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg(chelsea.resize((1200, 800)), exif=exif.tobytes())
    fast, reference = decode_pixels(data, min_short_side=300), decode_image(data, min_short_side=300)
    assert isinstance(fast, DecodedPixels)
    assert (fast.width, fast.height) == (reference.width, reference.height)
    assert (fast.width, fast.height) == ((800, 1200) if orientation >= 5 else (1200, 800))
    np.testing.assert_array_equal(np.asarray(fast.image), pillow_pixels(reference))
    # the resampler reads the rotated view in place: the same as from Pillow's image
    spec = Classifier.pretrained("efficientnet_lite0").spec.preprocess
    np.testing.assert_array_equal(resample_crop(fast.pixels, spec), resample_crop(reference.image, spec))


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95, 0.999])
def test_truncated_jpeg_is_refused_not_padded(tmp_path: Path, chelsea: Image.Image, fraction: float) -> None:
    data = jpeg(chelsea, progressive=fraction > 0.5)
    cut = data[: int(len(data) * fraction)]
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    for source in (cut, path):
        with pytest.raises(ImageDecodeError) as fast:
            decode_pixels(source)
        with pytest.raises(ImageDecodeError) as reference:
            decode_image(source)
        assert type(fast.value) is type(reference.value) and str(fast.value) == str(reference.value)
    if fraction >= 0.3:
        with pytest.raises(TruncatedImageError):
            decode_pixels(cut)
    with pytest.raises(ImageDecodeError):
        Classifier.pretrained("efficientnet_lite0").prepare(cut)  # the fast mode's own path


def test_corrupt_jpegs_get_pillows_verdict(chelsea: Image.Image) -> None:
    """Damage libjpeg-turbo reports in strict mode goes to Pillow's decoder: refused where Pillow
    refuses, decoded like Pillow where it only warns (extra bytes before a marker)."""
    data = jpeg(chelsea)
    middle = len(data) // 2
    end_early = data[:middle] + b"\xff\xd9" + data[middle:]  # an end-of-image marker mid-scan
    garbage_marker = data[:middle] + b"\xff\xc8\x00\x02" + data[middle:]
    extra_bytes = data[:-2] + b"\x00\x00\x00" + data[-2:]  # libjpeg warns: extraneous bytes
    for damaged in (end_early, garbage_marker, extra_bytes):
        try:
            expected = pillow_pixels(decode_image(damaged))
        except ImageDecodeError as exc:
            with pytest.raises(type(exc)):
                decode_pixels(damaged)
        else:
            np.testing.assert_array_equal(np.asarray(decode_pixels(damaged).image), expected)
    np.testing.assert_array_equal(
        np.asarray(decode_pixels(extra_bytes).image), pillow_pixels(decode_image(data))
    )


def test_pixel_limit_is_checked_from_the_header_before_decoding(chelsea: Image.Image) -> None:
    """A header claiming 8000×8000 over a 451×300 scan: refused as too large, not as corrupt."""
    data = bytearray(jpeg(chelsea))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (8000).to_bytes(2, "big") * 2
    with pytest.raises(ImageTooLargeError, match="8000×8000"):
        decode_pixels(bytes(data), max_pixels=10_000_000)
    with pytest.raises(ImageTooLargeError):
        decode_pixels(jpeg(chelsea), max_pixels=451 * 300 - 1)
    assert isinstance(decode_pixels(jpeg(chelsea), max_pixels=451 * 300), DecodedPixels)


def test_other_inputs_take_decode_images_path(chelsea: Image.Image) -> None:
    buffer = io.BytesIO()
    chelsea.save(buffer, "PNG")
    for source in (buffer.getvalue(), chelsea, np.asarray(chelsea)):
        assert isinstance(decode_pixels(source), DecodedImage)


def test_threads_decode_the_same_pixels(chelsea: Image.Image) -> None:
    photos = [jpeg(chelsea.resize((600 + 40 * i, 400 + 30 * i)), progressive=i % 2 == 1) for i in range(8)]
    single = [decode_pixels(p, min_short_side=256).pixels for p in photos]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            threaded = list(pool.map(lambda p: decode_pixels(p, min_short_side=256).pixels, photos))
            for a, b in zip(single, threaded):
                np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------
# damaged files: the same verdict as decode_image, whatever the damage
# --------------------------------------------------------------------------------------------------

FUZZ_SEEDS = []
for _params in ({"quality": 80}, {"quality": 70, "progressive": True}, {"quality": 85, "subsampling": 0}):
    _exif = Image.Exif()
    _exif[0x0112] = 6
    _small = Image.open(EXAMPLES / "coffee.jpg").convert("RGB").resize((64, 48))
    FUZZ_SEEDS.append(jpeg(_small, exif=_exif.tobytes(), **_params))
FUZZ_SEEDS.append(jpeg(_small.convert("L")))


@st.composite
def damaged_jpegs(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FUZZ_SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        if len(data) < 4:
            break
        # half the time in the header (markers, lengths, EXIF), else anywhere
        pos = draw(st.one_of(st.integers(2, min(400, len(data) - 1)), st.integers(2, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "truncate", "delete", "insert"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(deadline=None, database=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_jpegs(), st.sampled_from([None, 16]))
def test_damaged_jpegs_get_the_same_verdict_as_decode_image(data: bytes, short_side: int | None) -> None:
    limit = 1 << 20
    try:
        reference = decode_image(data, max_pixels=limit, min_short_side=short_side)
    except ImageDecodeError as exc:
        with pytest.raises(ImageDecodeError) as fast:
            decode_pixels(data, max_pixels=limit, min_short_side=short_side)
        assert type(fast.value) is type(exc)
        return
    fast = decode_pixels(data, max_pixels=limit, min_short_side=short_side)
    assert (fast.width, fast.height, fast.source_mode) == (
        reference.width,
        reference.height,
        reference.source_mode,
    )
    np.testing.assert_array_equal(np.asarray(fast.image), pillow_pixels(reference))


def test_oversized_jpeg_file_is_refused_as_too_large(tmp_path: Path, chelsea: Image.Image) -> None:
    """A file (read in two parts: the header, then the rest) claiming 8000×8000 over 8 MB of junk
    scan data: refused as too large, not judged corrupt."""
    data = bytearray(jpeg(chelsea))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (8000).to_bytes(2, "big") * 2
    path = tmp_path / "claims-64-megapixels.jpg"
    path.write_bytes(bytes(data[:-2]) + b"\x00" * (8 << 20) + b"\xff\xd9")
    with pytest.raises(ImageTooLargeError, match="8000×8000"):
        decode_pixels(path, max_pixels=10_000_000)
