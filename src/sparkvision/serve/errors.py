"""HTTP errors of the service: one exception type, one JSON shape, one place that picks status codes.

Every error response has the body ``{"error": "<what went wrong and what to do>", "code": "<stable
machine-readable name>", "status": <HTTP status>}`` (plus extra fields for some codes, e.g. the known
model names with ``unknown_model``).
"""

from __future__ import annotations

from typing import Any

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


def decode_error_status(message: str) -> tuple[int, str]:
    """Status and code for an :class:`~sparkvision.errors.ImageDecodeError` message.

    * not an image at all (text, PDF, unknown format) → 415 Unsupported Media Type;
    * over the pixel limit (decompression bomb) → 413 Content Too Large;
    * anything else (truncated, corrupt, empty, unsupported pixel mode) → 422 Unprocessable Content.

    The decoder has one exception type, so the kind is read from its message; the tests pin each case.
    """
    text = message.lower()
    if text.startswith("not a recognised image format"):
        return 415, "unsupported_media_type"
    if text.startswith("image is too large"):
        return 413, "image_too_large"
    return 422, "unreadable_image"
