"""Decoding and validation: paths, bytes, PIL images, arrays and Spark image structs → RGB images.

Everything the models see goes through :func:`decode_image` (or :func:`decode_bgr_struct` for rows of
Spark's ``image`` data source), so every front — Python API, CLI, Spark stages, web service — gets the
same answer for the same file:

* **one colour space**: the result is always a Pillow image in mode ``"RGB"``, first frame only
  (animated GIF / APNG / WebP, multi-page TIFF, MPO), EXIF orientation applied, transparency
  composited on **white** (a fully transparent pixel becomes white, as a browser shows it on a white
  page), high-bit-depth data scaled by its real range rather than clipped;
* **one error type**: anything wrong with one image — missing, a directory, empty, not an image,
  truncated, corrupt, over the pixel limit, a pixel mode we cannot convert — raises
  :class:`~sparkvision.errors.ImageDecodeError` with a message that names the problem. Callers that
  process batches turn it into that image's ``error`` and carry on; no other exception escapes for
  bad *data* (the property test in ``tests/test_images_fuzz.py`` holds us to that);
* **bounded work**: the pixel limit is checked against the header before any pixel is decoded, and
  truncated files are rejected, never padded with grey (Pillow's ``LOAD_TRUNCATED_IMAGES`` is left
  off; Pillow's global ``MAX_IMAGE_PIXELS`` is left alone);
* **fast large JPEGs**: with ``min_short_side`` set, JPEG data is decoded at a reduced DCT scale
  (Pillow's ``draft``) that still keeps the short side at least that long — a 12-megapixel photo
  decodes in a fraction of the time, and the reported width/height remain the true ones;
* **a straight path for plain JPEGs**: :func:`decode_pixels` (the tasks' ``decode="fast"`` mode) hands
  a JPEG whose header Pillow reads as YCbCr/RGB or grayscale to libjpeg-turbo's TurboJPEG API
  (``simplejpeg``) and returns its pixels as an RGBX array, with the same DCT scale, the same pixels
  (the same libjpeg-turbo code, checked in the tests), the same EXIF orientation and the same size
  check from the header; libjpeg-turbo runs in strict mode, so a file it reports anything wrong with
  (truncation, corrupt data, even a recoverable warning) is handed to Pillow's decoder, which rejects
  or accepts it exactly as :func:`decode_image` does. Other JPEGs (CMYK/YCCK) and other formats take
  :func:`decode_image`'s path.

:func:`iter_image_files` turns the paths a user named into a stream of image files, one folder
listing at a time, in a deterministic order.

Example::

    >>> from sparkvision.images import decode_image
    >>> d = decode_image("photo.jpg", min_short_side=256)      # doctest: +SKIP
    >>> d.image.mode, d.width, d.height, d.format              # doctest: +SKIP
    ('RGB', 4000, 3000, 'JPEG')
"""

from __future__ import annotations

import functools
import io
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

try:  # a core dependency; without it every JPEG takes Pillow's decoder (same pixels, a little slower)
    import simplejpeg
except ImportError:  # pragma: no cover - a broken install
    simplejpeg = None

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

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DecodedImage",
    "DecodedPixels",
    "ImageSource",
    "decode_bgr_struct",
    "decode_image",
    "decode_pixels",
    "header_pixels",
    "iter_image_files",
]

logger = logging.getLogger(__name__)

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray
"""Everything :func:`decode_image` accepts: a file path, encoded bytes, a PIL image or a pixel array."""

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Largest image (width × height, in pixels) decoded by default.

This is Pillow's own default decompression-bomb threshold (``PIL.Image.MAX_IMAGE_PIXELS``): about
256 MiB as RGB, comfortably above any camera photo (a 100-megapixel medium-format frame is the rare
exception; pass a larger ``max_pixels`` for those). Images above it are refused from their header
alone, before a byte of pixel data is decoded. Note that Pillow itself refuses images above
``2 × PIL.Image.MAX_IMAGE_PIXELS`` whatever ``max_pixels`` says; we do not change that global.
"""

# Formats Pillow can *identify* but whose pixels it cannot (or should not) decode here:
# EPS/PostScript is rendered by running Ghostscript on the file, which is not something to do with
# untrusted input (and fails outright where Ghostscript is absent); MPEG is identify-only (Pillow reads
# the size of a video stream and cannot decode a frame). Stub plugins (BUFR, GRIB, HDF5, WMF/EMF
# outside Windows) are excluded by type below: they need an external handler to load anything.
_NEVER_DECODED = frozenset({"EPS", "MPEG"})


def _decodable_formats() -> list[str]:
    """Pillow format names we let :func:`PIL.Image.open` try, computed from the registered plugins.

    Computed per call (it is cheap) so that plugins registered after import — ``pillow-heif``, for
    instance — are picked up without further configuration.
    """
    Image.init()
    names = []
    for name, (factory, _accept) in Image.OPEN.items():
        if name in _NEVER_DECODED:
            continue
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        names.append(name)
    return names


def _image_extensions() -> frozenset[str]:
    formats = set(_decodable_formats())
    if "JPEG" in formats:
        # MPO (multi-picture JPEG, e.g. from stereo cameras) is opened by the JPEG plugin's factory and
        # has no opener of its own in ``Image.OPEN``.
        formats.add("MPO")
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in formats)


IMAGE_EXTENSIONS: frozenset[str] = _image_extensions()
"""Lower-case file suffixes (``".jpg"``, ``".png"``, ``".avif"``...) that folder scans pick up.

Every extension Pillow registers for a format it can decode here, including AVIF and WebP when
Pillow was built with them, MPO, and APNG (``.png``/``.apng``). Stub formats that need an external
handler, identify-only MPEG and Ghostscript-rendered EPS are left out.
"""

# Pixel modes we know how to turn into RGB correctly. Anything else (Pillow's rare packed "BGR;15"
# style modes, future additions) is refused with a clear message rather than guessed at.
_SUPPORTED_MODES = frozenset(
    {
        "1",
        "L",
        "LA",
        "La",
        "P",
        "PA",
        "RGB",
        "RGBA",
        "RGBa",
        "RGBX",
        "CMYK",
        "YCbCr",
        "LAB",
        "HSV",
        "I",
        "I;16",
        "I;16L",
        "I;16B",
        "I;16N",
        "F",
    }
)

_WHITE = (255, 255, 255)

# EXIF orientation → the transpose that undoes it (as in the EXIF 2.3 spec, same as ImageOps).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112

# Serialises the short header-parsing steps (:func:`PIL.Image.open`, reading EXIF) so that the scoped
# warning filters around them cannot interleave with another decoding thread's
# (``warnings.catch_warnings`` swaps a process-global list). Pixel decoding — the expensive part,
# which releases the GIL — runs outside it.
_OPEN_LOCK = threading.Lock()

# Spark's image data source stores OpenCV type codes: CV_8UC1, CV_8UC3 (BGR), CV_8UC4 (BGRA).
_SPARK_MODES = {0: (1, "L"), 16: (3, "BGR"), 24: (4, "BGRA")}


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image, ready for preprocessing.

    Attributes:
        image: mode ``"RGB"``, first frame, EXIF orientation applied, alpha composited on white. When
            :func:`decode_image` was given ``min_short_side``, a JPEG may be smaller than its true size
            (never with a short side below ``min_short_side``).
        width: true width after EXIF rotation, before any draft reduction.
        height: true height after EXIF rotation, before any draft reduction.
        source_mode: the pixel mode the data came in (``"RGBA"``, ``"CMYK"``, ``"I;16"``...), for
            metadata; for arrays the layout (``"L"``, ``"RGB"``, ``"RGBA"``), for Spark rows
            ``"L"``/``"BGR"``/``"BGRA"``.
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ``"MPO"``...), or ``None`` for arrays,
            Spark rows and PIL images created in memory.
    """

    image: Image.Image
    width: int
    height: int
    source_mode: str
    format: str | None

    @property
    def reduced(self) -> bool:
        """Whether ``image`` was decoded at a reduced scale (JPEG ``draft``), so holds fewer pixels."""
        return self.image.size not in ((self.width, self.height), (self.height, self.width))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the decoded pixels (smaller than the true size when ``reduced``)."""
        return self.image.size


@dataclass(frozen=True)
class DecodedPixels:
    """One JPEG decoded straight into a pixel array by :func:`decode_pixels` (no Pillow image).

    Attributes:
        pixels: ``uint8`` array of shape ``H × W × 4``: red, green, blue and a padding byte (255) per
            pixel — Pillow's own in-memory layout, which the NumPy resampler
            (:func:`sparkvision.preprocess.resample_crop`) reads without a copy. EXIF orientation is
            applied as a view, so the rows and columns may be strided; the four bytes of a pixel are
            always adjacent. May be decoded at a reduced DCT scale, as :class:`DecodedImage`.
        width, height, source_mode, format: as in :class:`DecodedImage`.
    """

    pixels: np.ndarray
    width: int
    height: int
    source_mode: str
    format: str | None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of ``pixels``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def reduced(self) -> bool:
        """Whether the pixels were decoded at a reduced DCT scale, so fewer than the true size."""
        return self.size not in ((self.width, self.height), (self.height, self.width))

    @functools.cached_property
    def image(self) -> Image.Image:
        """The pixels as a Pillow ``"RGB"`` image (a copy, made on first use)."""
        return Image.fromarray(np.ascontiguousarray(self.pixels[:, :, :3]))


# --------------------------------------------------------------------------------------------------
# decode_image
# --------------------------------------------------------------------------------------------------


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_short_side: int | None = None,
) -> DecodedImage:
    """Decode one image from a path, encoded bytes, a PIL image or a numpy array into RGB.

    Args:
        source: a file path (``str`` / ``os.PathLike``); the encoded file content (``bytes``,
            ``bytearray``, ``memoryview``); a :class:`PIL.Image.Image` (converted the same way, never
            modified beyond loading its pixels); or a ``numpy`` array — ``H×W`` (gray), ``H×W×1``,
            ``H×W×3`` (RGB, *not* OpenCV's BGR) or ``H×W×4`` (RGBA), of ``uint8``, ``uint16``
            (scaled by /257), ``bool`` (white where true) or floating point with every value in
            [0, 1] (scaled by 255). A float array in 0–255 is refused rather than guessed at.
        max_pixels: refuse images whose width × height exceeds this, judged from the header before
            decoding (a decompression bomb costs nothing).
        min_short_side: a speed hint. For JPEG (and MPO) data, decode at the strongest DCT
            reduction (1/2, 1/4 or 1/8) that keeps the short side ``>= min_short_side``; other
            formats decode at full size. Pass what your resize step needs (e.g. 256 for a 224
            crop; twice that keeps the final antialiased resize doing real work).

    Returns:
        A :class:`DecodedImage` whose ``width``/``height`` are the true, EXIF-rotated size.

    Raises:
        ImageDecodeError: the image cannot be used; the message says why (missing file, a
            directory, permission denied, empty, not an image, truncated, corrupt, over the pixel
            limit, unsupported pixel mode or array layout).
        ConfigError: ``max_pixels`` or ``min_short_side`` is not a positive integer.

    Mode handling, so results are documented rather than accidental:

    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``, ``RGBX``: Pillow's conversion to RGB
      (for ``LAB`` the tests check it against an explicit LittleCMS LAB→sRGB transform).
    * Anything with alpha or a transparency key (``LA``, ``PA``, ``RGBA``, palette ``tRNS``...):
      composited on white.
    * ``I;16*``: 16-bit data scaled by its full range, ``round(v / 257)``.
    * ``I`` (32-bit integers): if every value is in 0–65535, treated as 16-bit data like ``I;16``
      (this is how 16-bit files were opened by older Pillow versions); otherwise the actual
      minimum–maximum range is stretched to 0–255.
    * ``F`` (32-bit float): if every finite value is in [0, 1] it is scaled by 255; otherwise values
      are clipped to 0–255. NaN becomes 0.
    """
    decoded = _decode(source, max_pixels, min_short_side, straight=False)
    assert isinstance(decoded, DecodedImage)  # only decode_pixels returns arrays
    return decoded


def decode_pixels(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_short_side: int | None = None,
) -> DecodedImage | DecodedPixels:
    """:func:`decode_image`, with plain JPEGs decoded straight into an RGBX array (the fast mode).

    A JPEG (or MPO) whose header Pillow reads as ``"RGB"`` (YCbCr or Adobe RGB) or ``"L"``, baseline or
    progressive, is decoded by libjpeg-turbo's TurboJPEG API (``simplejpeg``) into a
    :class:`DecodedPixels`: the same pixels as Pillow's decoder (same library; checked in the
    tests), at the same reduced DCT scale when ``min_short_side`` allows one, with the EXIF
    orientation applied and width/height reported as :func:`decode_image` does — without a Pillow
    image or a copy of the pixels. Everything else returns what :func:`decode_image` returns.

    Every guarantee of :func:`decode_image` holds: the pixel limit is checked against the header
    before decoding; libjpeg-turbo runs in strict mode, so a truncated or corrupt file — anything
    libjpeg-turbo warns about — goes to Pillow's decoder, which raises the same
    :class:`~sparkvision.errors.ImageDecodeError` (or decodes a file with a harmless warning) as
    :func:`decode_image` would — a truncated file is refused, never padded. (Like
    :func:`decode_image`, it accepts a JPEG whose scan is cut by an end-of-image marker with more data
    after it: libjpeg only warns, and Pillow fills the rest of the image with grey.) Safe to call
    from several threads (the decoder releases the GIL; each call has its own decompressor).
    """
    return _decode(source, max_pixels, min_short_side, straight=True)


def _decode(
    source: ImageSource, max_pixels: int, min_short_side: int | None, *, straight: bool
) -> DecodedImage | DecodedPixels:
    _check_limits(max_pixels, min_short_side)
    if isinstance(source, Image.Image):
        return _decode_pil(source, max_pixels)
    if isinstance(source, np.ndarray):
        return _decode_array(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        if view.nbytes == 0:
            raise ImageUnavailableError("empty image data (0 bytes): nothing to decode")
        encoded = view if view.c_contiguous else view.tobytes()
        if straight and encoded[:3] == _JPEG_SOI:
            return _decode_jpeg_data(encoded, max_pixels, min_short_side)
        return _decode_stream(io.BytesIO(encoded), max_pixels, min_short_side, straight)
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        with _open_image_file(path) as fh:
            if straight and fh.peek(3)[:3] == _JPEG_SOI:
                try:
                    # The header first: an oversized image is refused before the rest is read.
                    data = fh.read(_HEADER_BYTES)
                    header = _plain_jpeg_header(data)
                    if header is not None:
                        _check_pixels(header[0], header[1], max_pixels)
                    if len(data) == _HEADER_BYTES:
                        data += fh.read()
                except OSError as exc:
                    raise ImageUnavailableError(f"cannot read the file: {_os_reason(exc)}") from None
                return _decode_jpeg_data(data, max_pixels, min_short_side)
            return _decode_stream(fh, max_pixels, min_short_side, straight)
    if source is None:
        raise ImageUnavailableError("no image data (got None)")
    raise UnsupportedImageError(
        f"unsupported input type {type(source).__name__}: pass a file path, encoded bytes, "
        "a PIL image or a numpy array"
    )


def _check_limits(max_pixels: int, min_short_side: int | None) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if min_short_side is not None and (
        isinstance(min_short_side, bool)
        or not isinstance(min_short_side, (int, np.integer))
        or min_short_side <= 0
    ):
        raise ConfigError(f"min_short_side must be a positive integer or None, got {min_short_side!r}")


def _open_image_file(path: str) -> io.BufferedReader:
    """Open ``path`` for reading, turning every file-system problem into a specific message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageUnavailableError("file not found (or a broken symbolic link)") from None
    except PermissionError:
        raise ImageUnavailableError("permission denied: cannot access the file") from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in the path
        raise ImageUnavailableError(f"cannot access the file: {_os_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageUnavailableError(
            "is a directory, not an image file (pass folders to the folder scan instead)"
        )
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device would block or stream forever; refuse it before opening.
        raise ImageUnavailableError("not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageUnavailableError("file is empty (0 bytes)")
    try:
        return open(path, "rb")
    except PermissionError:
        raise ImageUnavailableError("permission denied: the file is not readable") from None
    except OSError as exc:
        raise ImageUnavailableError(f"cannot open the file: {_os_reason(exc)}") from None


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _decode_stream(
    fp: io.BufferedIOBase | io.BytesIO, max_pixels: int, min_short_side: int | None, straight: bool = False
) -> DecodedImage | DecodedPixels:
    """Identify, check and decode an encoded image from an open binary file object (``straight``:
    plain JPEGs through libjpeg-turbo's TurboJPEG API, see :func:`decode_pixels`)."""
    formats = _decodable_formats()
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Our own max_pixels check below decides about size, and header warnings ("Corrupt EXIF
            # data", odd metadata) end in either a decoded image or an ImageDecodeError anyway:
            # printed once per call site they would only be noise on a run over many files.
            warnings.simplefilter("ignore")
            img = Image.open(fp, formats=formats)
    except Image.DecompressionBombError as exc:
        raise _over_limit_from_pillow(exc, max_pixels) from None
    except UnidentifiedImageError:
        raise _unidentified(fp) from None
    except Exception as exc:  # any failure to parse a header is a property of the data
        raise _decode_failure(exc, part="header") from None
    if straight and simplejpeg is not None and img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L"):
        decoded = _decode_turbo(img, fp, max_pixels, min_short_side)
        if decoded is not None:
            return decoded
    return _finish(img, max_pixels, min_short_side, allow_draft=True, copy=False)


_JPEG_SOI = b"\xff\xd8\xff"
#: A JPEG file's first bytes, read before the rest: enough for its header (EXIF segments are at most
#: 64 KiB) in all but unusual files, whose size Pillow's reader then checks.
_HEADER_BYTES = 1 << 18
# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC, which share the range).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_EXIF_PREFIX = b"Exif\x00\x00"


def _plain_jpeg_header(data: bytes | memoryview) -> tuple[int, int, str, bytes | None] | None:
    """``(width, height, Pillow's mode, EXIF block)`` of a JPEG whose header needs nothing of Pillow:
    one or three components, at most one EXIF segment, no XMP (Pillow reads an orientation there too)
    and no multi-picture index (MPO). ``None`` for anything else, and for any header that does not
    parse — Pillow's own reader then handles the file."""
    size = len(data)
    i, frame, exif = 2, None, None
    while i + 4 <= size:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:
            return None  # no standalone markers belong in a header
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > size:
            return None
        segment = bytes(data[i + 4 : i + min(2 + length, 40)])
        if marker in _SOF_MARKERS:
            if frame is not None or length < 8:
                return None
            frame = ((data[i + 7] << 8) | data[i + 8], (data[i + 5] << 8) | data[i + 6], data[i + 9])
        elif marker == 0xE1 and segment.startswith(_EXIF_PREFIX):
            if exif is not None:
                return None  # Pillow joins several EXIF segments
            exif = bytes(data[i + 4 : i + 2 + length])
        elif (marker == 0xE1 and segment.startswith(b"http://ns.adobe.com/xap/")) or (
            marker == 0xE2 and segment.startswith(b"MPF\x00")
        ):
            return None
        i += 2 + length
    if frame is None or i + 4 > size:
        return None
    width, height, components = frame
    if components not in (1, 3):
        return None  # CMYK / YCCK: Pillow converts them
    return width, height, "L" if components == 1 else "RGB", exif


def _decode_jpeg_data(
    data: bytes | memoryview, max_pixels: int, min_short_side: int | None
) -> DecodedImage | DecodedPixels:
    """A JPEG's bytes: a plain one straight through libjpeg-turbo, headers Pillow must read (MPO,
    XMP, CMYK...) through Pillow's reader, and anything libjpeg-turbo refuses through Pillow's
    decoder (which raises the same error, or decodes, as :func:`decode_image`)."""
    header = _plain_jpeg_header(data)
    if header is None:
        return _decode_stream(io.BytesIO(data), max_pixels, min_short_side, straight=True)
    width, height, mode, exif = header
    _check_pixels(width, height, max_pixels)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    pixels = None
    if pillow_limit is None or width * height <= 2 * pillow_limit:  # else Pillow's own refusal
        pixels = _turbo_pixels(data, width, height, min_short_side)
    if pixels is None:
        return _decode_stream(io.BytesIO(data), max_pixels, min_short_side, straight=False)
    orientation = _exif_block_orientation(exif) if exif is not None else 1
    return _oriented(pixels, width, height, orientation, mode, "JPEG")


def _turbo_pixels(
    data: bytes | memoryview, width: int, height: int, min_short_side: int | None
) -> np.ndarray | None:
    """RGBX pixels from libjpeg-turbo at Pillow's draft scale, or ``None`` when it reports anything."""
    scale = _draft_scale(width, height, min_short_side) if min_short_side else 1
    want = (-(-height // scale), -(-width // scale))
    try:
        # strict: libjpeg's warnings (premature end of data, corrupt segments) raise ValueError
        # instead of returning grey-padded or damaged pixels.
        pixels = simplejpeg.decode_jpeg(
            data,
            "RGBX",
            min_height=want[0] if scale > 1 else 0,
            min_width=want[1] if scale > 1 else 0,
            strict=True,
        )
    except Exception:  # libjpeg-turbo refused the data: Pillow's decoder gives the verdict
        return None
    if pixels.shape != (*want, 4):  # a scale Pillow would not pick: let Pillow decode it
        return None
    return pixels


def _oriented(
    pixels: np.ndarray, width: int, height: int, orientation: int, mode: str, fmt: str | None
) -> DecodedPixels:
    pixels = _orient_array(pixels, orientation)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedPixels(pixels=pixels, width=width, height=height, source_mode=mode, format=fmt)


def _decode_turbo(
    img: Image.Image, fp: io.BufferedIOBase | io.BytesIO, max_pixels: int, min_short_side: int | None
) -> DecodedPixels | None:
    """Decode a plain JPEG whose header Pillow has read with libjpeg-turbo's TurboJPEG API into RGBX;
    ``None`` (Pillow decodes it, or says what is wrong) when libjpeg-turbo reports any problem."""
    width, height = img.size
    _check_pixels(width, height, max_pixels)
    if isinstance(fp, io.BytesIO):
        data: bytes | memoryview = fp.getbuffer()
    else:
        fp.seek(0)
        data = fp.read()
    try:
        pixels = _turbo_pixels(data, width, height, min_short_side)
    finally:
        if isinstance(data, memoryview):
            data.release()
    if pixels is None:
        return None
    return _oriented(pixels, width, height, _exif_orientation(img), img.mode, img.format)


def _draft_scale(width: int, height: int, min_short_side: int) -> int:
    """The DCT reduction 1/s (s in 8, 4, 2, 1) Pillow's ``draft`` picks for ``min_short_side``
    (see :func:`_draft_jpeg`): the largest with ``s <= min(width, height) // min_short_side``, none
    below twice the size."""
    if min(width, height) < 2 * min_short_side:
        return 1
    fits = min(width // min_short_side, height // min_short_side)
    return next(s for s in (8, 4, 2, 1) if s <= fits)


def _orient_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Undo an EXIF orientation on an ``H × W × C`` array, as a view (the transposes of
    ``_ORIENTATION_TRANSPOSE``)."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return pixels.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:
        return pixels.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return pixels.transpose(1, 0, 2)[::-1]
    return pixels


# Formats with a distinctive signature: if the data starts like one of them but Pillow cannot parse
# its header, say "corrupt PNG header" rather than "not an image".
_SIGNATURE_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "AVIF", "BMP", "JPEG2000", "QOI", "PSD")


def _unidentified(fp: io.BufferedIOBase | io.BytesIO) -> ImageDecodeError:
    try:
        fp.seek(0)
        prefix = fp.read(16)
    except Exception:  # an unreadable stream has no signature to report
        prefix = b""
    for name in _SIGNATURE_FORMATS:
        accept = Image.OPEN.get(name, (None, None))[1]
        try:
            claimed = bool(accept and accept(prefix))
        except Exception:  # a plugin's signature test failing says nothing either way
            claimed = False
        if claimed:
            return CorruptImageError(
                f"corrupt {name} header: the data starts like a {name} file but its header cannot be parsed"
            )
    return UnsupportedImageError(
        "not a recognised image format: the data matches no image type Pillow can decode here"
    )


def _decode_pil(img: Image.Image, max_pixels: int) -> DecodedImage:
    # No draft here: it would change the caller's image object. Loading it is unavoidable.
    return _finish(img, max_pixels, None, allow_draft=False, copy=True)


def _finish(
    img: Image.Image,
    max_pixels: int,
    min_short_side: int | None,
    *,
    allow_draft: bool,
    copy: bool,
) -> DecodedImage:
    """Check size and mode, decode the first frame, convert to RGB and undo EXIF orientation."""
    source_mode = img.mode
    fmt = img.format
    width, height = img.size
    _check_pixels(width, height, max_pixels)
    if source_mode not in _SUPPORTED_MODES:
        raise UnsupportedImageError(f"unsupported pixel mode {source_mode!r}: convert the image to RGB first")

    drafted = False
    if allow_draft and min_short_side and fmt in ("JPEG", "MPO"):
        drafted = _draft_jpeg(img, min_short_side)

    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise _over_limit_from_pillow(exc, max_pixels) from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise _decode_failure(exc) from None

    orientation = _exif_orientation(img)
    if not drafted:
        # The loaded size is authoritative (a few plugins settle the size only when loading).
        width, height = img.size
        _check_pixels(width, height, max_pixels)
    try:
        rgb = _to_rgb(img)
        if orientation in _ORIENTATION_TRANSPOSE:
            rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    except ImageDecodeError:
        raise
    except Exception as exc:  # e.g. a palette that does not match its data
        raise CorruptImageError(f"cannot convert {source_mode} pixels to RGB: {_describe(exc)}") from None
    if copy and rgb is img:
        rgb = img.copy()
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(image=rgb, width=width, height=height, source_mode=source_mode, format=fmt)


def _draft_jpeg(img: Image.Image, min_short_side: int) -> bool:
    """Ask libjpeg for a reduced DCT scale that keeps the short side >= ``min_short_side``.

    Pillow picks the largest scale 1/s (s in 8, 4, 2, 1) with ``s <= min(w // m, h // m)``, and the
    decoded side is ``ceil(side / s) >= side / s >= m``. Returns whether the size changed.
    """
    before = img.size
    if min(before) < 2 * min_short_side:
        return False
    try:
        img.draft("RGB", (min_short_side, min_short_side))
    except Exception:  # only an optimisation; load() reports real problems
        return False
    return img.size != before


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"image has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"image is too large: {width}×{height} = {pixels:,} pixels, over the limit of "
            f"{max_pixels:,} (possible decompression bomb); raise max_pixels if you trust this file"
        )


def _over_limit_from_pillow(exc: Exception, max_pixels: int) -> ImageDecodeError:
    return ImageTooLargeError(
        f"image is too large: over Pillow's decompression-bomb limit ({exc}); our limit is "
        f"{max_pixels:,} pixels"
    )


def _decode_failure(exc: BaseException, part: str = "data") -> ImageDecodeError:
    """Name the problem: truncation (the commonest: interrupted downloads and copies) or corruption."""
    text = str(exc)
    if isinstance(exc, EOFError) or (isinstance(exc, OSError) and "truncated" in text.lower()):
        return TruncatedImageError(f"truncated image {part}: the file ends early ({_describe(exc)})")
    return CorruptImageError(f"corrupt image {part}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _exif_block_orientation(block: bytes) -> int:
    """The orientation (1–8) in a JPEG's EXIF segment, read as :func:`_exif_orientation` reads it."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = Image.Exif()
            exif.load(block)
            value = int(exif.get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a damaged block says nothing about the pixels
        return 1
    return value if 1 <= value <= 8 else 1


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1–8), or 1 when absent or unreadable.

    A damaged EXIF block is common (editing tools mangle it) and says nothing about the pixels, so it
    never fails the image.
    """
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow warns "Corrupt EXIF data" and carries on; so do we, without the noise.
            warnings.simplefilter("ignore")
            value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:  # any parsing failure of a damaged block
        return 1
    return value if 1 <= value <= 8 else 1


# --------------------------------------------------------------------------------------------------
# mode → RGB
# --------------------------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded image of any supported mode to RGB (see :func:`decode_image` for the rules)."""
    mode = img.mode
    if mode.startswith("I;16"):
        return _gray_to_rgb(_scale_uint16(np.asarray(img)))
    if mode == "I":
        return _gray_to_rgb(_scale_int32(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_scale_float(np.asarray(img)))
    if mode == "La":
        img = img.convert("LA")
    if img.has_transparency_data:
        return _composite_on_white(img.convert("RGBA"))
    if mode == "RGB":
        return img
    return img.convert("RGB")


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    """Blend an RGBA image over an opaque white background: out = a·c + (1 − a)·255."""
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).convert("RGB")


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """Map 0–65535 onto 0–255 by the full range: round(v / 257), so 65535 → 255 and 257·k → k."""
    v = values.astype(np.uint32)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _scale_int32(values: np.ndarray) -> np.ndarray:
    """32-bit integer pixels: 16-bit data if every value fits 0–65535, else stretch min..max."""
    if values.size == 0:
        return values.astype(np.uint8)
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 65535:
        return _scale_uint16(values)
    if hi == lo:
        return np.zeros(values.shape, dtype=np.uint8)
    stretched = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(stretched).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Float pixels: ×255 if every finite value is in [0, 1], else clip to 0–255; NaN → 0."""
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
    finite = v[np.isfinite(v)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        v = v * 255.0
    return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# numpy arrays and Spark image structs
# --------------------------------------------------------------------------------------------------

_ARRAY_LAYOUTS = {2: "L", 3: "RGB", 4: "RGBA"}


def _decode_array(array: np.ndarray, max_pixels: int) -> DecodedImage:
    a = array
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        layout = "L"
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        layout = _ARRAY_LAYOUTS[a.shape[2]]
    else:
        raise UnsupportedImageError(
            f"unsupported array shape {tuple(array.shape)}: expected H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA)"
        )
    height, width = a.shape[:2]
    _check_pixels(width, height, max_pixels)
    pixels = _array_to_uint8(a)
    img = Image.fromarray(np.ascontiguousarray(pixels))
    return DecodedImage(image=_to_rgb(img), width=width, height=height, source_mode=layout, format=None)


def _array_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return _scale_uint16(a)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise UnsupportedImageError("float array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise UnsupportedImageError(
                f"float array values must lie in [0, 1], found {lo:g}..{hi:g}; "
                "for 0–255 data pass array.astype(numpy.uint8)"
            )
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    raise UnsupportedImageError(
        f"unsupported array dtype {a.dtype}: use uint8 (or uint16, bool, float in [0, 1])"
    )


def decode_bgr_struct(height: int, width: int, n_channels: int, mode: int, data: bytes) -> DecodedImage:
    """Convert one row of Spark's ``image`` data source (``spark.read.format("image")``) to RGB.

    Spark stores pixels row-major as OpenCV does: BGR for mode 16 (3 channels), BGRA for mode 24
    (4 channels, composited on white here) and gray for mode 0 (1 channel, replicated to RGB), all
    ``uint8``. Rows that Spark itself failed to decode (``dropInvalid`` off) carry mode -1 and no
    data; they, and any row whose sizes do not match its data, raise :class:`ImageDecodeError`.
    Spark's reader does not apply EXIF orientation; use ``binaryFile`` input for that.
    """
    if mode not in _SPARK_MODES:
        if mode == -1 or not data:
            raise CorruptImageError(
                "Spark could not decode this image (invalid row from the image data source)"
            )
        raise UnsupportedImageError(
            f"unsupported Spark image mode {mode}: expected 0 (gray), 16 (BGR) or 24 (BGRA)"
        )
    expected_channels, source_mode = _SPARK_MODES[mode]
    if n_channels != expected_channels:
        raise CorruptImageError(
            f"Spark image mode {mode} needs {expected_channels} channel(s), the row says {n_channels}"
        )
    if height <= 0 or width <= 0:
        raise CorruptImageError(f"image has no pixels ({width}×{height})")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsupportedImageError(f"Spark image data must be bytes, got {type(data).__name__}")
    view = memoryview(data)
    expected = height * width * n_channels
    if view.nbytes != expected:
        raise CorruptImageError(
            f"Spark image data holds {view.nbytes:,} bytes, but {height}×{width}×{n_channels} "
            f"needs {expected:,}"
        )
    flat = np.frombuffer(view if view.c_contiguous else view.tobytes(), dtype=np.uint8)
    if n_channels == 1:
        img = Image.fromarray(flat.reshape(height, width))
    elif n_channels == 3:
        img = Image.fromarray(np.ascontiguousarray(flat.reshape(height, width, 3)[:, :, ::-1]))
    else:
        bgra = flat.reshape(height, width, 4)
        img = Image.fromarray(np.ascontiguousarray(bgra[:, :, [2, 1, 0, 3]]))
    return DecodedImage(image=_to_rgb(img), width=width, height=height, source_mode=source_mode, format=None)


# --------------------------------------------------------------------------------------------------
# iter_image_files
# --------------------------------------------------------------------------------------------------


def iter_image_files(paths: Iterable[str | os.PathLike], *, recursive: bool = False) -> Iterator[Path]:
    """Stream the image files named by ``paths``, in a deterministic order.

    * A path that is not a folder is yielded as given — whatever its extension, and even when it does
      not exist — so every file a user names explicitly gets a result (or an error row from
      :func:`decode_image`). Checking that command-line arguments exist is the CLI's job.
    * A folder yields its files whose suffix (case-insensitive) is in :data:`IMAGE_EXTENSIONS`,
      sorted by name, skipping hidden entries (names starting with ``"."``, which also covers macOS
      ``._*`` resource forks). With ``recursive=True`` subfolders are visited depth-first, in the same
      name order as files (so the output is sorted by relative path, component by component);
      symbolic links to folders are followed, except one leading back to a folder on the current
      path, so link loops end (a link to a folder elsewhere yields its files under both names).
    * Only one folder listing per level of depth is held in memory; files are yielded as they come.
    * A folder that yields nothing raises :class:`InputNotFoundError` once it has been scanned, with
      a hint about ``--recursive`` when it has subfolders. A subfolder that cannot be listed is
      skipped with a logged warning; the named folder itself failing to list raises.

    A single ``str`` or path is accepted as a one-element list.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    for item in paths:
        path = Path(os.fsdecode(os.fspath(item)))
        if path.is_dir():
            yield from _iter_folder(path, recursive)
        else:
            yield path


def _iter_folder(root: Path, recursive: bool) -> Iterator[Path]:
    found = 0
    other_files = 0
    subfolders = 0
    # Depth-first with an explicit stack of (folder, its identity, iterator over its sorted entries),
    # so deep trees hit no recursion limit. A link is followed unless it leads back to a folder on
    # the current path (a loop); links to folders elsewhere are followed like the folders they name.
    stack: list[tuple[Path, tuple[int, int] | None, Iterator[tuple[str, bool]]]] = [
        (root, _folder_key(root), iter(_list_folder(root, top=True)))
    ]
    while stack:
        folder, _key, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name, is_dir = entry
        path = folder / name
        if is_dir:
            subfolders += 1
            if recursive:
                key = _folder_key(path)
                if key is None or any(key == ancestor for _, ancestor, _ in stack):
                    logger.debug("not following %s: it leads back to a folder being scanned", path)
                    continue
                stack.append((path, key, iter(_list_folder(path, top=False))))
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            found += 1
            yield path
        else:
            other_files += 1
    if found == 0:
        raise InputNotFoundError(_empty_folder_message(root, recursive, subfolders, other_files))


def _empty_folder_message(root: Path, recursive: bool, subfolders: int, other_files: int) -> str:
    message = f"no image files in {root}"
    hints = []
    if other_files:
        hints.append(
            f"{other_files} file(s) skipped because their extension is not an image type "
            "(name a file explicitly to try it anyway)"
        )
    if subfolders and not recursive:
        hints.append(f"it has {subfolders} subfolder(s): use --recursive (recursive=True) to search them")
    return message + (": " + "; ".join(hints) if hints else "")


def _folder_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _list_folder(folder: Path, *, top: bool) -> list[tuple[str, bool]]:
    """One folder's visible entries as sorted ``(name, is_folder)`` pairs (links followed)."""
    entries: list[tuple[str, bool]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                entries.append((entry.name, is_dir))
    except OSError as exc:
        if top:
            raise InputNotFoundError(
                f"cannot list folder {folder}: {_os_reason(exc)}; check its permissions"
            ) from None
        logger.warning("skipping folder %s: %s", folder, _os_reason(exc))
        return []
    entries.sort()
    return entries


def header_pixels(data: bytes) -> int | None:
    """Width × height of encoded image ``data`` as its header declares it, without decoding pixels.

    ``None`` when the header cannot be read (the decoder will say why). A service uses this to
    budget memory before decoding: an image costs about three bytes per pixel once decoded.
    """
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=_decodable_formats()) as img:
                width, height = img.size
    except Exception:
        return None
    return int(width) * int(height)
