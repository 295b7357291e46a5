"""``sparkvision serve``: run the web service (page + HTTP API) with uvicorn.

FastAPI and uvicorn are imported when the command runs, with a clear message when the ``serve``
extra is missing.
"""

from __future__ import annotations

import click

from ..errors import MissingExtraError
from ..extras import install_hint
from ..serve.settings import DEFAULT_MAX_WAIT_MS
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
        except ModuleNotFoundError as exc:
            raise MissingExtraError(
                f"the web service needs the 'serve' extra ({exc.name} is not installed): {install_hint('serve')}",
                extra="serve",
            ) from None

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
        config = uvicorn.Config(
            app, log_level=log_level, access_log=log_level == "debug", timeout_keep_alive=30
        )
        uvicorn.Server(config).run(sockets=[sock])
