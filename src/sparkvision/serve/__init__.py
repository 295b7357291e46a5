"""The web service: an HTTP API and a web page over :class:`sparkvision.Classifier`.

Install the extra and start it from the command line::

    pip install 'sparkvision[serve]'
    sparkvision serve --model efficientnet_lite0 --port 8000

or build the ASGI app yourself (for another ASGI server, or tests)::

    from sparkvision.serve import ServeSettings, create_app

    app = create_app("efficientnet_lite0", settings=ServeSettings(max_batch=16))

Endpoints: ``POST /v1/classify`` (multipart files or a raw image body), ``GET /v1/models``,
``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``GET /metrics`` (Prometheus), the page at
``/`` and an offline API reference at ``/docs``. Requests that arrive together are micro-batched into
one ONNX Runtime call (see :mod:`sparkvision.serve.batching`); how much work is taken on at once, and
the 503 beyond it, is :mod:`sparkvision.serve.limits`.

This package imports FastAPI only when :func:`create_app` is first used, so that
``sparkvision.cli.serve`` (loaded by the CLI on every start) needs nothing but click.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServeSettings

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
