"""``sparkvision serve``: run the web service (page + HTTP API) with uvicorn.

FastAPI and uvicorn are imported when the command runs, with a clear message when the ``serve``
extra is missing.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from ..errors import MissingExtraError
from ..extras import install_hint
from ..serve.settings import DEFAULT_MAX_INFLIGHT_PIXELS, DEFAULT_MAX_WAIT_MS, LOOPBACK_HOSTS
from .options import model_option, threads_option, top_k_option

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add the ``serve`` command to the ``sparkvision`` command group."""

    @cli.command("serve")
    @model_option(help="Default model: name or model directory.")
    @click.option(
        "--preload", multiple=True, metavar="MODEL", help="Also load this model at start (repeatable)."
    )
    @click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help="Address to listen on (0.0.0.0 exposes the service to your network).",
    )
    @click.option("-p", "--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option(
        "--api-key",
        envvar="SPARKVISION_API_KEY",
        default=None,
        help="Require this key on /v1/* (Bearer or X-API-Key). Env: SPARKVISION_API_KEY.",
    )
    @click.option(
        "--max-upload-mb",
        default=20.0,
        show_default=True,
        type=click.FloatRange(0.01, 1024),
        help="Largest request body.",
    )
    @click.option(
        "--max-images", default=32, show_default=True, type=click.IntRange(1), help="Images per request."
    )
    @click.option(
        "--max-pixels",
        default=50_000_000,
        show_default=True,
        type=click.IntRange(1),
        help="Largest image (width × height).",
    )
    @click.option(
        "--max-batch", default=16, show_default=True, type=click.IntRange(1), help="Images per model call."
    )
    @click.option(
        "--max-wait-ms",
        default=DEFAULT_MAX_WAIT_MS,
        show_default=True,
        type=click.FloatRange(0, 1000),
        help="Longest wait to fill a batch.",
    )
    @top_k_option(
        help="Labels per image when a request names no top_k [default: 5, or fewer if the model has fewer]."
    )
    @threads_option()
    @click.option(
        "--max-inflight-mb",
        default=64.0,
        show_default=True,
        type=click.FloatRange(0.01),
        help="Request bytes received or held at once, over all requests; beyond it requests wait.",
    )
    @click.option(
        "--max-inflight-pixels",
        default=DEFAULT_MAX_INFLIGHT_PIXELS,
        show_default=True,
        type=click.IntRange(1),
        help="Pixels decoded at once, over all requests; beyond it requests wait.",
    )
    @click.option(
        "--max-request-pixels",
        default=None,
        type=click.IntRange(1),
        help="Pixels in one request, all images together (413 above) [default: --max-inflight-pixels].",
    )
    @click.option(
        "--max-waiting",
        default=256,
        show_default=True,
        type=click.IntRange(1),
        help="Requests waiting for room; one more gets 503 with Retry-After.",
    )
    @click.option(
        "--max-wait-s",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.01),
        help="Longest wait for room before 503 with Retry-After.",
    )
    @click.option(
        "--header-timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.01),
        help="Seconds a connection has to send its request headers.",
    )
    @click.option(
        "--body-timeout",
        default=15.0,
        show_default=True,
        type=click.FloatRange(0.01),
        help="Longest pause while a request body arrives (408 and close).",
    )
    @click.option(
        "--shutdown-timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0),
        help="On SIGTERM/Ctrl+C: seconds to let requests finish before they are cancelled.",
    )
    @click.option(
        "--max-models",
        default=4,
        show_default=True,
        type=click.IntRange(1),
        help="Models loaded at once; loading another unloads the least recently used idle one.",
    )
    @click.option(
        "--build/--no-build",
        "build_models",
        default=True,
        show_default=True,
        help="Build catalogue models on a client's first request for them.",
    )
    @click.option(
        "--allowed-host",
        "allowed_hosts",
        multiple=True,
        metavar="HOST",
        help="Host name clients may use (repeatable; '*' any) [default: on a loopback address "
        "localhost, 127.0.0.1, ::1; otherwise any].",
    )
    @click.option(
        "--cors-origin",
        "cors_origins",
        multiple=True,
        metavar="ORIGIN",
        help="Web origin whose pages may call the API (repeatable, e.g. https://app.example.com) "
        "[default: none].",
    )
    @click.option(
        "--log-level",
        default="info",
        show_default=True,
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    )
    def serve(
        model: str,
        preload: tuple[str, ...],
        host: str,
        port: int,
        api_key: str | None,
        max_upload_mb: float,
        max_images: int,
        max_pixels: int,
        max_batch: int,
        max_wait_ms: float,
        top_k: int | None,
        threads: int | None,
        max_inflight_mb: float,
        max_inflight_pixels: int,
        max_request_pixels: int | None,
        max_waiting: int,
        max_wait_s: float,
        header_timeout: float,
        body_timeout: float,
        shutdown_timeout: float,
        max_models: int,
        build_models: bool,
        allowed_hosts: tuple[str, ...],
        cors_origins: tuple[str, ...],
        log_level: str,
    ) -> None:
        """Serve a web page and an HTTP API that classify uploaded images.

        \b
        Open the printed URL in a browser, or call the API:
          curl -F file=@cat.jpg 'http://127.0.0.1:8000/v1/classify?top_k=5'
          curl http://127.0.0.1:8000/v1/models
        """
        try:
            import uvicorn

            from ..serve import ServeSettings, create_app
            from ..serve.listen import bind, is_loopback
            from ..serve.protocol import protocol_with_header_timeout
        except ModuleNotFoundError as exc:
            raise MissingExtraError(
                f"the web service needs the 'serve' extra ({exc.name} is not installed): {install_hint('serve')}",
                extra="serve",
            ) from None

        if not allowed_hosts and is_loopback(host):
            allowed_hosts = LOOPBACK_HOSTS  # a page elsewhere must not reach us by DNS rebinding
        settings = ServeSettings(
            api_key=api_key or None,
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_images=max_images,
            max_pixels=max_pixels,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            **({} if top_k is None else {"default_top_k": top_k}),
            threads=threads,
            preload=preload,
            max_inflight_bytes=max(int(max_inflight_mb * 1024 * 1024), int(max_upload_mb * 1024 * 1024)),
            max_inflight_pixels=max_inflight_pixels,
            max_request_pixels=min(max_request_pixels or max_inflight_pixels, max_inflight_pixels),
            max_waiting=max_waiting,
            max_wait_s=max_wait_s,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            max_models=max_models,
            build_models=build_models,
            allowed_hosts=allowed_hosts or None,
            cors_origins=cors_origins,
        )
        app = create_app(model, settings=settings)
        if not is_loopback(host) and not api_key:
            click.echo(
                f"warning: listening on {host} without an API key: anyone on your network can use "
                "this service (set --api-key or SPARKVISION_API_KEY)",
                err=True,
            )
        sock = bind(host, port)
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound_port}/"
        click.echo(f"sparkvision: serving model {model} at {url} (API {url}v1/classify, docs {url}docs)")
        click.echo("the model loads in the background; press Ctrl+C to stop", err=True)
        protocol = protocol_with_header_timeout(settings.header_timeout_s)
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=log_level == "debug",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=shutdown_timeout,
            **({"http": protocol} if protocol is not None else {}),
        )
        restore = _show_service_logs(log_level)
        _give_large_buffers_back()
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            restore()


def _give_large_buffers_back() -> None:
    """Make glibc return decoded-image buffers to the system as soon as they are freed.

    glibc raises its mmap threshold after the first large buffer is freed (up to 32 MiB), after
    which Pillow's 16 MiB pixel blocks come from per-thread heaps that keep the memory: measured,
    one 49-megapixel decode per decoder thread left the process 190 MB larger for good, and the
    mixed load test peaked at 792 MB instead of about 450 MB. A fixed 1 MiB threshold keeps every
    large buffer in its own mapping, unmapped on free. Elsewhere than glibc this does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return
    if mallopt is not None:
        m_mmap_threshold = -3
        mallopt(m_mmap_threshold, 1024 * 1024)


def _show_service_logs(level: str) -> Callable[[], None]:
    """Let the service's own log lines (model ready, client disconnected …) through at ``level``;
    returns the function that puts the logging set-up back as it was.

    The CLI has configured the root logger's handler; only without one (``serve`` called from
    code) is a handler added here. Either way each record is printed once.
    """
    import logging

    logger = logging.getLogger("sparkvision")
    previous = logger.level
    logger.setLevel(level.upper())
    added: logging.Handler | None = None
    if not logging.getLogger().handlers and not logger.handlers:
        added = logging.StreamHandler()
        added.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(added)

    def restore() -> None:
        logger.setLevel(previous)
        if added is not None:
            logger.removeHandler(added)

    return restore
