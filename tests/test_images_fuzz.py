"""Property test: whatever bytes arrive, decode_image returns a sane RGB image or raises ImageDecodeError.

Inputs are random bytes and real JPEG / PNG / GIF files (made from scikit-image's astronaut) damaged by
bit flips, truncations, deletions, insertions, overwrites and splices — the header-heavy first bytes
are targeted often, since that is where a decoder's assumptions live. Any other exception escaping
(``OSError``, ``SyntaxError``, ``struct.error``, ``ValueError``...) would lose a batch's other rows.
"""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data as skdata

from sparkvision.errors import ImageDecodeError
from sparkvision.images import DecodedImage, decode_image

# Mutated headers can claim huge sizes; a small limit keeps each example fast and small in memory
# (the limit check itself is the same code at any size).
FUZZ_MAX_PIXELS = 1 << 20

FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seeds() -> list[bytes]:
    photo = Image.fromarray(skdata.astronaut()).resize((64, 48), Image.Resampling.BICUBIC)
    out = []

    buf = io.BytesIO()
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(buf, "JPEG", quality=80, exif=exif.tobytes())
    out.append(buf.getvalue())

    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=70, progressive=True)
    out.append(buf.getvalue())

    buf = io.BytesIO()
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    rgba.save(buf, "PNG")
    out.append(buf.getvalue())

    buf = io.BytesIO()
    photo.quantize(16).save(buf, "PNG", transparency=0)
    out.append(buf.getvalue())

    buf = io.BytesIO()
    frames = [photo.quantize(32), photo.transpose(Image.Transpose.ROTATE_180).quantize(32)]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        size = len(data)
        # Half the time aim just past the signature (size fields, first chunks and markers).
        pos = draw(st.one_of(st.integers(min(8, size - 1), min(63, size - 1)), st.integers(0, size - 1)))
        op = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "overwrite", "splice"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
        else:  # splice in a piece of another (or the same) real file
            donor = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(donor) - 1))
            data[pos:] = donor[start : start + draw(st.integers(1, 2048))] + data[pos:]
    return bytes(data)


def assert_decodes_sanely_or_refuses(data: bytes, min_short_side: int | None = None) -> None:
    try:
        decoded = decode_image(data, max_pixels=FUZZ_MAX_PIXELS, min_short_side=min_short_side)
    except ImageDecodeError as exc:
        assert str(exc)  # a message the user can read
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.image.mode == "RGB"
    assert decoded.width > 0 and decoded.height > 0
    assert decoded.width * decoded.height <= FUZZ_MAX_PIXELS
    array = np.asarray(decoded.image)
    assert array.dtype == np.uint8
    assert array.shape == (decoded.image.height, decoded.image.width, 3)
    if min_short_side is None:
        assert decoded.image.size == (decoded.width, decoded.height)
    else:
        assert decoded.image.width <= decoded.width and decoded.image.height <= decoded.height
        assert min(decoded.image.size) >= min(min_short_side, decoded.width, decoded.height)


def test_seeds_decode():
    for seed in SEEDS:
        assert decode_image(seed).image.mode == "RGB"


@settings(FUZZ_SETTINGS, max_examples=300)
@given(mutated_images())
def test_mutated_images_decode_or_raise_decode_error(data):
    assert_decodes_sanely_or_refuses(data)


@settings(FUZZ_SETTINGS, max_examples=100)
@given(mutated_images())
def test_mutated_images_with_draft_decoding(data):
    assert_decodes_sanely_or_refuses(data, min_short_side=16)


@settings(FUZZ_SETTINGS, max_examples=150)
@given(
    st.one_of(
        st.binary(min_size=0, max_size=512),
        # random bodies behind real signatures reach deeper into each plugin
        st.tuples(
            st.sampled_from(
                [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"II*\x00", b"BM", b"RIFF"]
            ),
            st.binary(max_size=512),
        ).map(b"".join),
    )
)
def test_random_bytes_decode_or_raise_decode_error(data):
    assert_decodes_sanely_or_refuses(data)
