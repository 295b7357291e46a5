"""The HTTP connection protocol for ``sparkvision serve``: uvicorn's, plus a deadline for headers.

uvicorn starts timing a connection only once a response has been sent (its keep-alive timeout): a
client that connects and then sends nothing, or sends its request headers one byte at a time
(slow loris), holds a connection and its memory for ever. This protocol closes a connection whose
request headers are not complete within ``header_timeout`` seconds of the connection opening or of
the request's first byte. The request *body* has its own timeouts, in the application
(:mod:`sparkvision.serve.uploads`).

It extends uvicorn's httptools protocol (the ``serve`` extra installs httptools);
:func:`protocol_with_header_timeout` returns ``None`` where httptools is missing, and the server then
runs without the header deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["protocol_with_header_timeout"]

log = logging.getLogger("sparkvision.serve")


def protocol_with_header_timeout(header_timeout: float) -> type[asyncio.Protocol] | None:
    """An HTTP protocol class for ``uvicorn.Config(http=...)``, or ``None`` without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is not installed
        return None

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; closes connections that do not finish their headers in time."""

        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                who = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
                log.info(
                    "closed the connection from %s: no complete request headers in %g s", who, header_timeout
                )
                self.transport.close()

    return HeaderDeadlineProtocol
