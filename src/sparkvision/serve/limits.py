"""Admission control: how much work the service takes on at once, and what happens beyond it.

Memory in a classification service goes to two things a client controls: the request bodies being
received (up to ``max_upload_bytes`` each) and the images being decoded (three bytes per pixel, and a
50-megapixel PNG compresses to a few hundred kilobytes). Each has a :class:`Budget`, shared by every
request: a request takes its share before the work starts and gives it back when it ends.

When the budget is spent, a request waits in line — up to ``max_waiting`` requests, each for at most
``max_wait_s`` — and beyond either bound it is answered ``503`` with ``Retry-After``: the designed
answer to overload, cheap to give and easy for a client to act on. Waiting requests keep their
bodies in the kernel's socket buffers, not in the service's memory.

Room is given oldest first to every waiting request that fits, so small requests go ahead of a large
one that does not fit yet: a 50-megapixel upload waiting for another one to finish decoding never
holds up a stream of phone photos. (Measured with ``benchmarks/serve_load.py --mixed``: making small
requests queue behind an aged large one put seconds on the photos' p95.) A large request that finds
no room within ``max_wait_s`` — because other large ones hold it — gets the 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .errors import ApiError

__all__ = ["Budget", "overloaded"]


def overloaded(what: str, retry_after: int = 1) -> ApiError:
    """The 503 every admission refusal becomes."""
    return ApiError(
        503,
        "busy",
        f"the server is busy ({what}); retry in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


@dataclass(eq=False)
class _Waiter:
    amount: int
    granted: asyncio.Future[None] = field(repr=False)


class Budget:
    """A shared amount (bytes, pixels) that requests hold while they work, with a bounded line.

    All methods must be called from the event loop's thread.
    """

    def __init__(self, name: str, capacity: int, *, max_waiting: int, max_wait_s: float) -> None:
        self.name = name
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self.in_use = 0
        self.refused = 0
        self._line: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Requests in line for this budget now."""
        return len(self._line)

    @contextlib.asynccontextmanager
    async def hold(self, amount: int) -> AsyncIterator[None]:
        """Hold ``amount`` (at most the capacity) for the body of the ``async with``.

        Raises the 503 :class:`ApiError` when the line is full or the wait exceeds ``max_wait_s``.
        """
        amount = max(0, min(int(amount), self.capacity))
        await self._acquire(amount)
        try:
            yield
        finally:
            self._release(amount)

    async def _acquire(self, amount: int) -> None:
        if self._fits(amount):
            self.in_use += amount
            return
        if len(self._line) >= self.max_waiting:
            self.refused += 1
            raise overloaded(f"{len(self._line)} requests already wait for {self.name}")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(amount, loop.create_future())
        self._line.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), self.max_wait_s)
        except asyncio.TimeoutError:
            if not waiter.granted.done():
                self._line.remove(waiter)
                self.refused += 1
                raise overloaded(f"no room for {self.name} within {self.max_wait_s:g} s") from None
        except BaseException:  # cancelled (client gone, shutdown): give back what was granted
            if waiter.granted.done():
                self._release(amount)
            else:
                self._line.remove(waiter)
                self._grant()
            raise

    def _fits(self, amount: int) -> bool:
        return self.in_use + amount <= self.capacity

    def _release(self, amount: int) -> None:
        self.in_use -= amount
        self._grant()

    def _grant(self) -> None:
        """Let in every waiter that fits, oldest first."""
        for waiter in list(self._line):
            if self._fits(waiter.amount):
                self._line.remove(waiter)
                self.in_use += waiter.amount
                waiter.granted.set_result(None)
