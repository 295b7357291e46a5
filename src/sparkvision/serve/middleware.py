"""The outermost layer of the service: the ``Host`` check and the per-request metrics.

A plain ASGI middleware (no per-request objects from the framework): it refuses a request for a host
name the service does not answer to before any route runs, and records every answered request's
route template, method, status and duration. A client that went away before its answer is recorded
with status 499 (nginx's name for it) and logged as one line, never as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import error_body
from .metrics import Metrics

__all__ = ["CLIENT_CLOSED", "ServiceMiddleware", "held_until_answered", "host_name"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The status recorded for a request whose client disconnected before the answer.
CLIENT_CLOSED = 499
_RESOURCES = "sparkvision.resources"


def held_until_answered(request: Any) -> contextlib.AsyncExitStack:
    """A stack of resources this request holds until its answer has been sent (or it failed).

    Lets a route take a share of a budget in one line, without wrapping the rest of its body.
    """
    stack = request.scope.get(_RESOURCES)
    if stack is None:
        raise RuntimeError("held_until_answered needs ServiceMiddleware around the app")
    return stack


def host_name(scope: Scope) -> str:
    """The request's ``Host`` header without its port, lower-case (``[::1]:8000`` → ``::1``)."""
    for key, value in scope.get("headers", ()):
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host[1 : host.find("]")] if "]" in host else host[1:]
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


def _route(scope: Scope) -> str:
    """A bounded label for the route: its template, never the client's raw path."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return str(route.path)
    path = str(scope.get("path", ""))
    if path.startswith("/static/"):
        return "/static"
    return "unmatched"


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, allowed_hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.metrics = metrics
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if self.allowed_hosts is not None and host_name(scope) not in self.allowed_hosts:
            await self._refuse_host(scope, send)
            self.metrics.observe_request("unmatched", scope["method"], 400, time.perf_counter() - started)
            return
        status = 500
        started_response = False

        async def recording_send(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started_response = True
            await send(message)

        resources = scope[_RESOURCES] = contextlib.AsyncExitStack()
        try:
            async with resources:
                await self.app(scope, receive, recording_send)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its shutdown deadline passes (a
            # stalled upload, a long batch): answer 503 if we still can, log one line, and end.
            log.info("%s %s cancelled: the server is shutting down", scope["method"], scope.get("path"))
            if not started_response:
                status = 503
                with contextlib.suppress(Exception):
                    await _send_json(send, 503, "shutting_down", "the server is shutting down; retry shortly")
        finally:
            if scope.get("sparkvision.client_gone"):
                status = CLIENT_CLOSED
            self.metrics.observe_request(
                _route(scope), scope["method"], status, time.perf_counter() - started
            )

    async def _refuse_host(self, scope: Scope, send: Send) -> None:
        message = (
            f"this server does not answer to host {host_name(scope)!r}; "
            "the operator can allow it with --allowed-host"
        )
        await _send_json(send, 400, "host_not_allowed", message)


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers += [(b"retry-after", b"1"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
