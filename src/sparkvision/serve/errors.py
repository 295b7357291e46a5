"""HTTP errors of the service: one exception type, one JSON shape, one place that picks status codes.

Every error response has the body ``{"error": "<what went wrong and what to do>", "code": "<stable
machine-readable name>", "status": <HTTP status>}`` (plus extra fields for some codes, e.g. the known
model names with ``unknown_model``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError

__all__ = ["ApiError", "decode_error_status", "error_body"]


class ApiError(Exception):
    """An error that becomes one HTTP response (raised anywhere in a request, rendered by the app)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message, **self.extra)


def error_body(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": code, "status": status, **extra}


def decode_error_status(error: ImageDecodeError) -> tuple[int, str]:
    """Status and code for an image that cannot be decoded, chosen by the error's type:

    * not an image at all (text, PDF, unknown format, unsupported pixel mode) → 415 Unsupported Media Type;
    * over the pixel limit (decompression bomb) → 413 Content Too Large;
    * anything else (truncated, corrupt, empty) → 422 Unprocessable Content.
    """
    if isinstance(error, UnsupportedImageError):
        return 415, "unsupported_media_type"
    if isinstance(error, ImageTooLargeError):
        return 413, "image_too_large"
    return 422, "unreadable_image"
