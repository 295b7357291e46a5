"""``sparkvision serve``: run the web service (page + HTTP API) with uvicorn.

Loaded by the CLI on every start, so this module imports only click at module level; FastAPI and
uvicorn are imported when the command runs, with a clear message when the ``serve`` extra is missing.
"""

from __future__ import annotations

import ipaddress
import socket

import click

from ..errors import MissingExtraError
from ..extras import install_hint
from .settings import DEFAULT_MAX_WAIT_MS

__all__ = ["register"]

_DEFAULT_MODEL = "efficientnet_lite0"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so the printed URL has the real port (``--port 0``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def register(cli: click.Group) -> None:
    """Add the ``serve`` command to the ``sparkvision`` command group."""

    @cli.command("serve")
    @click.option(
        "-m", "--model", default=_DEFAULT_MODEL, show_default=True, help="Default model: name or directory."
    )
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
    @click.option(
        "-k", "--top-k", default=5, show_default=True, type=click.IntRange(1), help="Default top_k."
    )
    @click.option(
        "-t",
        "--threads",
        default=None,
        type=click.IntRange(1),
        help="ONNX Runtime threads [default: physical cores].",
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
        top_k: int,
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

            from . import ServeSettings, create_app
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
            default_top_k=top_k,
            threads=threads,
            preload=preload,
        )
        app = create_app(model, settings=settings)
        if not _is_loopback(host) and not api_key:
            click.echo(
                f"warning: listening on {host} without an API key: anyone on your network can use "
                "this service (set --api-key or SPARKVISION_API_KEY)",
                err=True,
            )
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound_port}/"
        click.echo(f"sparkvision: serving model {model} at {url} (API {url}v1/classify, docs {url}docs)")
        click.echo("the model loads in the background; press Ctrl+C to stop", err=True)
        config = uvicorn.Config(
            app, log_level=log_level, access_log=log_level == "debug", timeout_keep_alive=30
        )
        uvicorn.Server(config).run(sockets=[sock])
