"""The ASGI application: routes, error rendering, and the request path of one classification.

``POST /v1/classify`` goes: check the key → find the model (404 unknown, 503 loading) → read the
body within the limits → decode every image in a thread pool (an unreadable image is 415/422/413) →
queue the decoded images with the model's :class:`~sparkvision.serve.batching.MicroBatcher` → answer
with one record per image, exactly the CLI's JSON record (``path`` is the uploaded file name).

A request with one image that cannot be read fails with that image's status. With several images,
the request succeeds as long as one image was classified, and the others carry ``error`` (as rows of
the CLI's output do); when none could be read it fails with the first image's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..engine import default_threads
from ..errors import ConfigError, ImageDecodeError, SparkvisionError
from ..models.catalogue import DEFAULT_MODEL
from ..options import parse_candidate_labels, resolve_top_k
from ..results import Prediction, PreparedImage
from .batching import QueueFullError
from .errors import ApiError, decode_error_status, error_body
from .registry import Loader, ModelRegistry, ModelSlot, load_classifier
from .settings import ServeSettings
from .uploads import Upload, read_uploads

__all__ = ["STATIC_DIR", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")

_CLASSIFY_DESCRIPTION = """\
Classify one or several images.

Send them as **multipart** file fields named `file` (repeat the field for several images), or send
**one image as the raw request body** (any content type other than multipart).

```
curl -F file=@cat.jpg 'http://127.0.0.1:8000/v1/classify?top_k=5'
curl -F file=@a.jpg -F file=@b.png 'http://127.0.0.1:8000/v1/classify'
curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' 'http://127.0.0.1:8000/v1/classify'
```

Each entry of `results` is the record `sparkvision classify --format json` prints:
`path` (the uploaded file name), `labels`, `scores`, `class_ids` (best first) and `error`.

Errors: 401 missing/wrong API key, 404 unknown model, 413 body, image count or pixel count over the
limit, 415 not an image, 422 corrupt/truncated image or bad parameter, 503 model loading or server busy
(see `Retry-After`). Every error body is `{"error": message, "code": name, "status": number}`.
"""

_MULTIPART_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "one or more images (repeat the field)",
                        },
                        "candidate_labels": {
                            "type": "string",
                            "description": "zero-shot models only: comma-separated labels",
                        },
                    },
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def create_app(
    model: str = DEFAULT_MODEL,
    *,
    settings: ServeSettings | None = None,
    loader: Loader | None = None,
) -> FastAPI:
    """Build the service for ``model`` (a catalogue name, a cached model, or a model directory).

    The model loads in the background when the app starts (its lifespan), so the server accepts
    connections at once and answers 503 until the model is ready. ``loader`` builds a classifier
    from a name or directory (default: :func:`~sparkvision.serve.registry.load_classifier`); tests
    pass their own.
    """
    settings = settings or ServeSettings()
    inference = ThreadPoolExecutor(1, thread_name_prefix="sparkvision-infer")
    decoders = ThreadPoolExecutor(
        settings.decode_workers or max(2, default_threads()), thread_name_prefix="sparkvision-upload"
    )
    registry = ModelRegistry(model, settings, inference, loader or load_classifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for slot in registry.slots():
            registry.start_loading(slot)
        try:
            yield
        finally:
            await registry.close()
            decoders.shutdown(wait=False, cancel_futures=True)
            # Wait for a batch still running: ONNX Runtime must not be torn down under it at exit.
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: inference.shutdown(wait=True, cancel_futures=True)
            )

    app = FastAPI(
        title="sparkvision",
        version=__version__,
        summary="Classify images with pretrained models on the CPU.",
        docs_url=None,  # FastAPI's Swagger UI loads its assets from a CDN; ours works offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.settings = settings
    _install_error_handlers(app)
    auth = [Depends(_key_checker(settings.api_key))] if settings.api_key else []

    # -- page and docs ----------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        return RedirectResponse("/static/favicon.svg")

    # -- health -----------------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"], summary="Liveness and readiness")
    async def healthz() -> JSONResponse:
        """200 with ``status: ok`` once the default model is ready; 503 while it loads or if it failed."""
        default = registry.slot(None)
        status = {"ready": "ok", "failed": "error"}.get(default.state, "loading")
        body: dict[str, Any] = {
            "status": status,
            "version": __version__,
            "model": default.name,
            "models": {slot.name: slot.state for slot in registry.slots()},
            "batching": {
                slot.name: slot.batcher.stats.as_dict() for slot in registry.slots() if slot.batcher
            },
        }
        if default.error:
            body["error"] = default.error
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    # -- API --------------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["models"], summary="Models this server knows", dependencies=auth)
    def models() -> dict[str, Any]:  # plain def: FastAPI runs it in a thread (it reads the cache dir)
        """Every catalogue and cached model; ``available`` ones can be named in ``/v1/classify``."""
        return {"default": registry.default_name, "models": registry.describe()}

    @app.post(
        "/v1/classify",
        tags=["classify"],
        summary="Classify images",
        description=_CLASSIFY_DESCRIPTION,
        dependencies=auth,
        openapi_extra=_MULTIPART_SCHEMA,
    )
    async def classify(
        request: Request,
        top_k: Annotated[
            int | None, Query(description="labels per image (default 5; at most the model's classes)")
        ] = None,
        model: Annotated[
            str | None, Query(description="model name from /v1/models (default: the server's)")
        ] = None,
        candidate_labels: Annotated[
            str | None, Query(description="zero-shot models only: comma-separated candidate labels")
        ] = None,
    ) -> JSONResponse:
        started = time.perf_counter()
        slot = registry.ready_slot(model)
        zero_shot = slot.spec.task == "zero-shot"
        # A fixed-label model's top_k is checked before the upload is read; a zero-shot one's once
        # its candidate labels (which may come in the form) are known.
        k = None if zero_shot else _top_k(top_k, slot.spec.num_classes, settings)
        parsed = await read_uploads(request, settings)
        labels = _check_labels(slot, candidate_labels or parsed.options.get("candidate_labels"))
        if labels is not None:
            k = _top_k(top_k, len(labels), settings)
        assert k is not None
        records, batch_sizes = await _classify_uploads(slot, parsed.uploads, k, labels, decoders, settings)
        body: dict[str, Any] = {
            "model": slot.name,
            "task": slot.spec.task,
            "top_k": k,
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
            "batch_sizes": batch_sizes,
            "results": records,
        }
        if labels is not None:
            body["candidate_labels"] = list(labels)
        return JSONResponse(body)

    return app


# -- helpers --------------------------------------------------------------------------------------
def _top_k(top_k: int | None, num_labels: int, settings: ServeSettings) -> int:
    try:
        return resolve_top_k(top_k, num_labels, default=settings.default_top_k)
    except ConfigError as exc:
        raise ApiError(422, "bad_top_k", str(exc)) from None


def _check_labels(slot: ModelSlot, text: str | None) -> tuple[str, ...] | None:
    """The request's candidate labels, checked by the shared policy (:mod:`sparkvision.options`)."""
    zero_shot = slot.spec.task == "zero-shot"
    if text is None or not text.strip():
        if zero_shot:
            raise ApiError(
                422,
                "candidate_labels_required",
                f"model {slot.name!r} is zero-shot: pass candidate_labels=label1,label2,...",
            )
        return None
    if not zero_shot:
        raise ApiError(
            422,
            "not_zero_shot",
            f"model {slot.name!r} is not zero-shot: candidate_labels only apply to zero-shot models "
            f"(its labels are fixed)",
        )
    try:
        return parse_candidate_labels(text)
    except ConfigError as exc:
        raise ApiError(422, "bad_candidate_labels", str(exc)) from None


def _prepare(classifier: Any, data: bytes, max_pixels: int) -> PreparedImage | ImageDecodeError:
    """Decode and preprocess one upload in a decoder thread, so that the inference thread only
    stacks tensors (its batches never wait for resizing). The core reports every failure to read
    the image, a decoder bug included, as ImageDecodeError."""
    try:
        return classifier.prepare(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        return exc


async def _classify_uploads(
    slot: ModelSlot,
    uploads: Sequence[Upload],
    top_k: int,
    labels: list[str] | None,
    decoders: ThreadPoolExecutor,
    settings: ServeSettings,
) -> tuple[list[dict[str, Any]], list[int]]:
    batcher = slot.batcher
    assert batcher is not None
    loop = asyncio.get_running_loop()
    batcher.incoming(len(uploads))
    try:
        decoded = await asyncio.gather(
            *(
                loop.run_in_executor(decoders, _prepare, slot.classifier, upload.data, settings.max_pixels)
                for upload in uploads
            )
        )
    finally:
        batcher.incoming(-len(uploads))
    good = [i for i, item in enumerate(decoded) if isinstance(item, PreparedImage)]
    try:
        batched = await batcher.submit(
            [decoded[i] for i in good],
            top_k=top_k,
            candidate_labels=labels,
            paths=[uploads[i].name for i in good],
        )
    except QueueFullError as exc:
        raise ApiError(
            503, "busy", f"the server is busy ({exc}); retry shortly", headers={"Retry-After": "1"}
        ) from None
    except ConfigError as exc:  # e.g. candidate labels the zero-shot model refuses
        raise ApiError(422, "invalid_parameter", str(exc)) from None
    except SparkvisionError as exc:
        raise ApiError(500, "inference_failed", f"inference failed: {exc}") from None
    by_index = dict(zip(good, batched))
    records: list[dict[str, Any]] = []
    sizes: list[int] = []
    first_failure: ImageDecodeError | None = None
    for i, upload in enumerate(uploads):
        if i in by_index:
            records.append(by_index[i].prediction.to_dict())
            sizes.append(by_index[i].batch_size)
            continue
        error = decoded[i]
        assert isinstance(error, ImageDecodeError)
        first_failure = first_failure or error
        records.append(Prediction(path=upload.name, error=str(error), index=i).to_dict())
        sizes.append(0)
    if not good and first_failure is not None:
        status, code = decode_error_status(first_failure)
        who = f"{uploads[0].name}: " if uploads[0].name else ""
        raise ApiError(status, code, f"{who}{first_failure}", results=records)
    return records, sizes


_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


def _key_checker(expected: str):
    """A dependency accepting ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (constant-time)."""
    wanted = expected.encode()

    async def check_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        header: Annotated[str | None, Depends(_KEY_HEADER)],
    ) -> None:
        given = header if header is not None else (bearer.credentials if bearer is not None else None)
        if given is None or not secrets.compare_digest(given.encode(), wanted):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check_key


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("query", "body"))
            problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        message = "; ".join(problems) or "invalid request"
        return JSONResponse(error_body(422, "invalid_parameter", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            error_body(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                500, "internal_error", f"internal error ({exc.__class__.__name__}); see the server log"
            ),
            status_code=500,
        )
