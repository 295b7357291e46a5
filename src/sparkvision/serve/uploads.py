"""Reading the images out of a ``POST /v1/classify`` request, within the size limits.

Two shapes are accepted:

* ``multipart/form-data`` with one or more file parts in fields named ``file`` or ``files``
  (``curl -F file=@a.jpg -F file=@b.jpg``), optionally a text field ``candidate_labels``;
* any other content type: the body *is* one image (``curl --data-binary @a.jpg -H 'Content-Type: image/jpeg'``).

Only bytes are accepted. A text value where a file belongs (``-F file=/etc/passwd`` without the
``@``) is refused: the server never opens a path a client names. Upload file names are kept only as
labels for the results, reduced to their last path component.

The body size is checked against ``Content-Length`` before anything is read, and counted while it is
read (chunked uploads have no length), so an oversized upload is refused after at most the limit.
A client that stalls while sending its body (``body_timeout_s`` without a byte, or the whole body not
in within ``body_deadline_s``) gets 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from .errors import ApiError
from .settings import ServeSettings

__all__ = ["FILE_FIELDS", "ParsedUpload", "Upload", "check_content_length", "read_uploads"]

#: Multipart field names that carry images.
FILE_FIELDS = ("file", "files")
#: Multipart text fields that are options rather than images.
OPTION_FIELDS = ("candidate_labels",)
_MAX_NAME = 255


@dataclass(frozen=True)
class Upload:
    """One uploaded image: its (display) file name and its bytes."""

    name: str | None
    data: bytes


@dataclass(frozen=True)
class ParsedUpload:
    uploads: list[Upload]
    options: dict[str, str]


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "upload_too_large",
        f"request body is larger than the limit of {limit:,} bytes ({limit / 2**20:.0f} MiB); "
        f"send smaller or fewer images per request",
        limit_bytes=limit,
    )


def clean_name(raw: str | None) -> str | None:
    """Keep only the last component of a client-given file name (display only, never opened)."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:_MAX_NAME] or None


def _stalled(settings: ServeSettings) -> ApiError:
    return ApiError(
        408,
        "request_timeout",
        f"the request body did not arrive in time (no data for {settings.body_timeout_s:g} s, or "
        f"not complete within {settings.body_deadline_s:g} s); the connection is closed",
        headers={"Connection": "close"},
    )


def _limited_receive(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]], limit: int, settings: ServeSettings
) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
    total = 0
    deadline = time.monotonic() + settings.body_deadline_s

    async def counting_receive() -> MutableMapping[str, Any]:
        nonlocal total
        wait = min(settings.body_timeout_s, deadline - time.monotonic())
        try:
            message = await asyncio.wait_for(receive(), max(wait, 0.0))
        except asyncio.TimeoutError:
            raise _stalled(settings) from None
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise _too_large(limit)
        return message

    return counting_receive


def check_content_length(request: Request, settings: ServeSettings) -> None:
    """Refuse a body announced as too large before reading a byte of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise ApiError(400, "bad_request", f"invalid Content-Length header {declared!r}") from None
    if length > settings.max_upload_bytes:
        raise _too_large(settings.max_upload_bytes)


async def read_uploads(request: Request, settings: ServeSettings) -> ParsedUpload:
    """Extract the images (and option fields) from the request; raises :class:`ApiError`."""
    check_content_length(request, settings)
    limited = Request(request.scope, _limited_receive(request.receive, settings.max_upload_bytes, settings))
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return await _read_multipart(limited, settings)
    body = await limited.body()
    if not body:
        raise ApiError(
            422,
            "no_image",
            "empty request body: send an image as the body, or as multipart field 'file' "
            "(curl -F file=@photo.jpg URL)",
        )
    return ParsedUpload([Upload(None, body)], {})


async def _read_multipart(request: Request, settings: ServeSettings) -> ParsedUpload:
    try:
        form = await request.form(max_files=settings.max_images, max_fields=len(OPTION_FIELDS) + 8)
    except StarletteHTTPException as exc:
        detail = str(exc.detail)
        if "too many files" in detail.lower():
            raise _too_many(settings.max_images) from None
        raise ApiError(400, "bad_multipart", f"invalid multipart body: {detail}") from None
    try:
        uploads: list[Upload] = []
        options: dict[str, str] = {}
        for field_name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if field_name not in FILE_FIELDS:
                    raise ApiError(
                        422,
                        "wrong_field",
                        f"unexpected file field {field_name!r}: send images in a field named 'file' "
                        f"(one or several times), e.g. curl -F file=@photo.jpg",
                    )
                uploads.append(Upload(clean_name(value.filename), await value.read()))
            elif field_name in OPTION_FIELDS:
                options[field_name] = value
            elif field_name in FILE_FIELDS:
                raise ApiError(
                    422,
                    "not_a_file",
                    f"field {field_name!r} holds text, not a file: upload the image's bytes "
                    f"(curl -F file=@photo.jpg, note the @); the server never reads paths",
                )
            else:
                raise ApiError(
                    422,
                    "wrong_field",
                    f"unexpected form field {field_name!r}: send images in a field named 'file'; "
                    f"the only other field is 'candidate_labels'",
                )
    finally:
        await form.close()
    if not uploads:
        raise ApiError(
            422,
            "no_image",
            "no image in the request: send one or more files in multipart field 'file' "
            "(curl -F file=@photo.jpg URL)",
        )
    if len(uploads) > settings.max_images:
        raise _too_many(settings.max_images)
    return ParsedUpload(uploads, options)


def _too_many(limit: int) -> ApiError:
    return ApiError(
        413,
        "too_many_images",
        f"too many images in one request (the limit is {limit}); split them over several requests",
        limit_images=limit,
    )
