"""The ASGI application: routes, error rendering, and the request path of one classification.

``POST /v1/classify`` goes: check the key → find the model (404 unknown, 503 loading) → wait for
room in the upload budget, read the body within the limits → check the request's pixels from the
image headers, wait for room in the pixel budget → decode every image in a thread pool (an
unreadable image is 415/422/413) → queue the decoded images with the model's
:class:`~sparkvision.serve.batching.MicroBatcher` → answer with one record per image, exactly the
CLI's JSON record (``path`` is the uploaded file name). The budgets and what happens beyond them are
in :mod:`sparkvision.serve.limits`; ``/metrics`` (:mod:`sparkvision.serve.metrics`) counts it all.

A request with one image that cannot be read fails with that image's status. With several images,
the request succeeds as long as one image was classified, and the others carry ``error`` (as rows of
the CLI's output do); when none could be read it fails with the first image's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .._version import __version__
from ..engine import default_threads
from ..errors import ConfigError, ImageDecodeError, SparkvisionError
from ..images import header_pixels
from ..models.catalogue import DEFAULT_MODEL
from ..options import parse_candidate_labels, resolve_top_k
from ..results import Prediction, PreparedImage
from .batching import QueueFullError
from .errors import ApiError, decode_error_status, error_body
from .limits import Budget
from .metrics import CONTENT_TYPE, Metrics
from .middleware import ServiceMiddleware, held_until_answered
from .registry import Loader, ModelRegistry, ModelSlot, load_classifier
from .settings import ServeSettings
from .uploads import Upload, check_content_length, read_uploads

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

Errors: 401 missing/wrong API key, 404 unknown model, 408 body not received in time, 413 body, image
count or pixel count (per image or per request) over the limit, 415 not an image, 422 corrupt/truncated
image or bad parameter, 503 model loading or building, or server busy (see `Retry-After`). Every error
body is `{"error": message, "code": name, "status": number}`.
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
    metrics = Metrics()
    registry = ModelRegistry(
        model,
        settings,
        inference,
        loader or load_classifier,
        on_batch=metrics.observe_batch,
        on_evict=lambda name: metrics.count(metrics.evictions),
    )
    uploads_budget = Budget(
        "upload bytes",
        settings.max_inflight_bytes,
        max_waiting=settings.max_waiting,
        max_wait_s=settings.max_wait_s,
    )
    pixels_budget = Budget(
        "decoded pixels",
        settings.max_inflight_pixels,
        max_waiting=settings.max_waiting,
        max_wait_s=settings.max_wait_s,
    )
    _register_gauges(metrics, registry, uploads_budget, pixels_budget)

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
    app.state.metrics = metrics
    _install_error_handlers(app, metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(ServiceMiddleware, metrics=metrics, allowed_hosts=settings.allowed_hosts)
    auth = [Depends(_key_checker(settings.api_key))] if settings.api_key else []

    from .captioning import add_caption_route

    add_caption_route(app, registry, settings, decoders, inference, auth)

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
    @app.get("/healthz", tags=["service"], summary="Liveness")
    async def healthz() -> JSONResponse:
        """200 while the service runs (``status``: ``ok``, or ``loading`` while the default model
        loads); 503 when the default model failed to load (a restart is needed)."""
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
        return JSONResponse(body, status_code=503 if status == "error" else 200)

    @app.get("/readyz", tags=["service"], summary="Readiness")
    async def readyz() -> JSONResponse:
        """200 once the default model is loaded and requests can be served; 503 before (or if it failed)."""
        default = registry.slot(None)
        ready = default.state == "ready"
        body: dict[str, Any] = {"ready": ready, "model": default.name, "state": default.state}
        if default.error:
            body["error"] = default.error
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_page() -> Response:
        """Counters, histograms and gauges in the Prometheus text format (see the README)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

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
        # Held until the answer is sent (the middleware closes the request's resources).
        await held_until_answered(request).enter_async_context(
            uploads_budget.hold(_declared_body_size(request, settings))
        )
        parsed = await read_uploads(request, settings)
        labels = _check_labels(slot, candidate_labels or parsed.options.get("candidate_labels"))
        if labels is not None:
            k = _top_k(top_k, len(labels), settings)
        assert k is not None
        records, batch_sizes = await _classify_uploads(
            slot, parsed.uploads, k, labels, decoders, settings, pixels_budget, metrics
        )
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
def _declared_body_size(request: Request, settings: ServeSettings) -> int:
    """What a request's body may take in memory: its ``Content-Length``, else the upload limit.

    A body announced as over the limit is refused here (413), before it waits for room."""
    check_content_length(request, settings)
    try:
        return min(int(request.headers["content-length"]), settings.max_upload_bytes)
    except (KeyError, ValueError):
        return settings.max_upload_bytes


def _request_pixels(uploads: Sequence[Upload], settings: ServeSettings) -> int:
    """Pixels the request's images will decode to (from their headers), checked against the
    per-request budget. Images over the per-image limit, or with unreadable headers, are refused by
    the decoder before any pixel is decoded, so they cost nothing here."""
    total = 0
    for upload in uploads:
        pixels = header_pixels(upload.data)
        if pixels is not None and pixels <= settings.max_pixels:
            total += pixels
    if total > settings.max_request_pixels:
        raise ApiError(
            413,
            "request_too_large",
            f"the images of this request hold {total:,} pixels together, over the limit of "
            f"{settings.max_request_pixels:,} per request; send them in several requests",
            limit_pixels=settings.max_request_pixels,
        )
    return total


def _register_gauges(metrics: Metrics, registry: ModelRegistry, uploads: Budget, pixels: Budget) -> None:
    metrics.gauge(
        "sparkvision_queue_depth",
        "Requests waiting for room (upload, decode) and images waiting for a model call (inference)",
        ("queue",),
        lambda: [
            (("upload",), uploads.waiting),
            (("decode",), pixels.waiting),
            (("inference",), sum(s.batcher.queued for s in registry.slots() if s.batcher)),
        ],
    )
    metrics.gauge(
        "sparkvision_inflight",
        "Upload bytes and decoded pixels held by requests now",
        ("resource",),
        lambda: [(("upload_bytes",), uploads.in_use), (("pixels",), pixels.in_use)],
    )
    metrics.gauge(
        "sparkvision_model_load_seconds",
        "Time the last load of each model took (building it from its source included)",
        ("model",),
        lambda: [((s.name,), s.load_seconds) for s in registry.slots() if s.load_seconds is not None],
    )
    metrics.gauge(
        "sparkvision_model_loaded",
        "1 for each model loaded now, 0 for known models that are not",
        ("model",),
        lambda: [((s.name,), 1.0 if s.state == "ready" else 0.0) for s in registry.slots()],
    )


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
    pixels_budget: Budget,
    metrics: Metrics,
) -> tuple[list[dict[str, Any]], list[int]]:
    batcher = slot.batcher
    assert batcher is not None
    loop = asyncio.get_running_loop()
    # Header parsing is quick but not free (and shares a lock with the decoders): off the event loop,
    # and not behind the decoders' queue either.
    pixels = await loop.run_in_executor(None, _request_pixels, uploads, settings)
    batcher.incoming(len(uploads))
    try:
        async with pixels_budget.hold(pixels):  # decoded pixels are dropped once prepared
            decoded = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        decoders, _prepare, slot.classifier, upload.data, settings.max_pixels
                    )
                    for upload in uploads
                )
            )
    finally:
        batcher.incoming(-len(uploads))
    good = [i for i, item in enumerate(decoded) if isinstance(item, PreparedImage)]
    metrics.count(metrics.decoded, "ok", amount=len(good))
    metrics.count(metrics.decoded, "error", amount=len(decoded) - len(good))
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


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a real header (e.g. an in-process caller): its UTF-8 form
        return value.encode("utf-8")


_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


def _key_checker(expected: str):
    """A dependency accepting ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (constant-time).

    Keys may hold any Unicode character: HTTP carries header values as bytes, which clients (curl,
    browsers, httpx, requests) send as UTF-8. The server reads headers as Latin-1, which maps each byte
    to one character, so encoding them back to Latin-1 gives the exact bytes sent; those are compared
    with the key's UTF-8 bytes.
    """
    wanted = expected.encode("utf-8")

    async def check_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        header: Annotated[str | None, Depends(_KEY_HEADER)],
    ) -> None:
        given = header if header is not None else (bearer.credentials if bearer is not None else None)
        if given is None or not hmac.compare_digest(_header_bytes(given), wanted):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check_key


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status in (408, 503):
            metrics.count(metrics.rejected, exc.code)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        """A client that hangs up mid-upload is routine: one log line, no traceback, no answer."""
        request.scope["sparkvision.client_gone"] = True
        metrics.count(metrics.disconnects)
        client = request.client
        who = f"{client.host}:{client.port}" if client else "a client"
        log.info("%s disconnected during %s %s", who, request.method, request.url.path)
        return Response(status_code=499)

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
