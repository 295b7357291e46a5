"""The exceptions sparkvision raises, in one place.

Every error a user can meet derives from :class:`SparkvisionError`, so callers can catch one type and
the CLI can turn any of them into a single clean line. Each message says what went wrong *and* what to
do about it.

::

    SparkvisionError
    ├── ConfigError            bad argument or option (unknown format, top_k out of range, ...)
    │   └── MissingExtraError  a feature whose optional dependencies are not installed (names the extra)
    ├── InputNotFoundError     a path the user named does not exist / holds no images
    ├── ImageDecodeError       one image could not be read (per-image: becomes a row's ``error``)
    │   ├── ImageUnavailableError  no data to read: None, 0 bytes, a missing or unreadable file
    │   ├── UnsupportedImageError  not an image, or a format / pixel mode / input type we cannot decode
    │   ├── ImageTooLargeError     over the pixel limit (decompression-bomb guard)
    │   └── CorruptImageError      the data claims to be an image but cannot be parsed
    │       └── TruncatedImageError    the data ends early (interrupted download or copy)
    ├── ModelNotFoundError     a model name that no catalogue entry or cache directory matches
    ├── ModelFormatError       a model directory or ``sparkvision.json`` that is missing or damaged
    └── ModelImportError       a checkpoint that cannot be turned into our model format

Per-image problems never escape a batch: :class:`ImageDecodeError` is caught by the classifier and
recorded on that image's prediction. Its subclasses say the cause by type, so that a front can act on
it (the web service answers 415, 413 or 422) without reading the message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptImageError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "ImageUnavailableError",
    "InputNotFoundError",
    "MissingExtraError",
    "ModelFormatError",
    "ModelImportError",
    "ModelNotFoundError",
    "SparkvisionError",
    "TruncatedImageError",
    "UnsupportedImageError",
]


class SparkvisionError(Exception):
    """Base class of every error sparkvision raises on purpose."""


class ConfigError(SparkvisionError, ValueError):
    """An argument or option has a value we cannot use."""


class MissingExtraError(ConfigError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra
    that installs it (``pip install 'sparkvision[parquet]'``), and :attr:`extra` holds its name.
    It is also an :class:`ImportError`, so code that guards an optional import keeps working."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class InputNotFoundError(SparkvisionError, FileNotFoundError):
    """A path given as input does not exist, or a folder holds no image files."""


class ImageDecodeError(SparkvisionError):
    """One image could not be decoded (corrupt, truncated, not an image, too large...)."""


class ImageUnavailableError(ImageDecodeError):
    """There is no image data to decode: ``None``, 0 bytes, or a file that is missing or unreadable."""


class UnsupportedImageError(ImageDecodeError):
    """The data is not an image, or uses a format, pixel mode or input type we cannot decode."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than the limit allows (a decompression-bomb guard)."""


class CorruptImageError(ImageDecodeError):
    """The data looks like an image but its header or pixel data cannot be parsed."""


class TruncatedImageError(CorruptImageError):
    """The image data ends before the image does (an interrupted download or copy)."""


class ModelNotFoundError(SparkvisionError, LookupError):
    """No model of that name is in the catalogue or the cache."""


class ModelFormatError(SparkvisionError):
    """A model directory is incomplete or its ``sparkvision.json`` is invalid."""


class ModelImportError(SparkvisionError):
    """A checkpoint could not be converted into a sparkvision model directory."""
