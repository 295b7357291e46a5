"""Micro-batching: images from requests that arrive together share one ONNX Runtime call.

One inference of 8 images costs far less than 8 inferences of one (the session's threads and the
convolution kernels are used better), so the service queues decoded images and a single collector
task hands them to :meth:`Classifier.classify_batch` in groups of at most ``max_batch``.

When does a batch close? Under load, requests pile up while the previous batch runs, so the next
batch is simply everything waiting (up to ``max_batch``): no timer is involved. The only wait is a
short one (``max_wait_s``, tens of milliseconds) and it happens only when other requests have already
arrived and are still being decoded (:meth:`MicroBatcher.incoming` tells the batcher about them), so
a lone request never waits for company that is not coming.

Inference runs in the given executor (one thread for the whole service: ONNX Runtime already uses
every core, so two concurrent runs would only compete), never on the event loop; a slow batch delays
later batches, not the server's other endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..results import Prediction

__all__ = ["BatchStats", "BatchedPrediction", "ClassifierLike", "MicroBatcher", "QueueFullError"]


class ClassifierLike(Protocol):
    """What the batcher needs from a classifier (a :class:`sparkvision.Classifier` has it)."""

    def classify_batch(self, sources: Sequence[Any], **options: Any) -> list[Prediction]: ...


class QueueFullError(Exception):
    """More images are waiting for inference than the service accepts (back-pressure → 503)."""


@dataclass(frozen=True)
class BatchedPrediction:
    """One image's prediction, with the size of the batch it ran in and that batch's time."""

    prediction: Prediction
    batch_size: int
    batch_ms: float


@dataclass
class BatchStats:
    """Counters since start: batches run, images classified, and the largest batch seen."""

    batches: int = 0
    images: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.images / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "images": self.images,
            "largest_batch": self.largest,
            "mean_batch": round(mean, 2),
        }


@dataclass
class _Job:
    source: Any
    top_k: int
    labels: tuple[str, ...] | None
    path: str | None
    future: asyncio.Future[BatchedPrediction]


class MicroBatcher:
    """Collects images from concurrent requests into batches for one classifier.

    Create it anywhere; its collector task starts on the first :meth:`submit`, inside the running
    event loop. All methods must be called from that loop's thread.
    """

    def __init__(
        self,
        classifier: ClassifierLike,
        executor: Executor,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.02,
        max_queue: int = 512,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_batch(size, seconds)`` is called (on the event loop) after every model call batch."""
        self.classifier = classifier
        self.on_batch = on_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._executor = executor
        self._pending: deque[_Job] = deque()
        self._incoming = 0
        self._running = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- producer side ----------------------------------------------------------------------------
    def incoming(self, count: int) -> None:
        """Announce ``count`` images that are on their way (negative: they arrived or were dropped)."""
        self._incoming = max(0, self._incoming + count)
        if count < 0 and self._wakeup is not None:
            self._wakeup.set()

    @property
    def queued(self) -> int:
        """Images waiting for a model call."""
        return len(self._pending)

    @property
    def in_progress(self) -> int:
        """Images announced (being decoded) or in the model call running now."""
        return self._incoming + self._running

    async def submit(
        self,
        sources: Sequence[Any],
        *,
        top_k: int,
        candidate_labels: Sequence[str] | None = None,
        paths: Sequence[str | None] | None = None,
    ) -> list[BatchedPrediction]:
        """Queue decoded images and wait for their predictions (input order).

        ``top_k`` may differ between requests sharing a batch: the batch runs with the largest and
        each prediction is cut to its own. Images with different ``candidate_labels`` (zero-shot
        models) never share a classifier call. Raises :class:`QueueFullError` when the queue is full,
        and re-raises a failure of the classifier call.
        """
        if not sources:
            return []
        if len(self._pending) + len(sources) > self.max_queue:
            raise QueueFullError(
                f"{len(self._pending)} images are waiting for inference (limit {self.max_queue})"
            )
        loop = asyncio.get_running_loop()
        self._ensure_started()
        assert self._wakeup is not None
        names = list(paths) if paths is not None else [None] * len(sources)
        key = tuple(candidate_labels) if candidate_labels is not None else None
        jobs = [_Job(source, top_k, key, name, loop.create_future()) for source, name in zip(sources, names)]
        self._pending.extend(jobs)
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(job.future for job in jobs)))
        except BaseException:
            for job in jobs:  # the client went away: don't spend inference on the rest
                job.future.cancel()
            raise

    # -- lifecycle --------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="sparkvision-batcher")

    async def close(self) -> None:
        """Stop the collector; waiting requests get :class:`asyncio.CancelledError`."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            self._pending.popleft().future.cancel()

    # -- collector --------------------------------------------------------------------------------
    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            while not self._pending:
                wakeup.clear()
                await wakeup.wait()
            deadline = loop.time() + self.max_wait_s
            while len(self._pending) < self.max_batch and self._incoming > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wakeup.clear()
                try:
                    await asyncio.wait_for(wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            taken = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            batch = [job for job in taken if not job.future.done()]
            if not batch:
                continue
            started = time.perf_counter()
            self._running = len(batch)
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except Exception as exc:  # the executor itself failed (e.g. shut down)
                outcomes = [exc] * len(batch)
            finally:
                self._running = 0
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            self.stats.batches += 1
            self.stats.images += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            for job, outcome in zip(batch, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _run_batch(self, batch: list[_Job]) -> list[BatchedPrediction | BaseException]:
        """Runs in the inference thread: one classifier call per distinct candidate-label set."""
        groups: dict[tuple[str, ...] | None, list[int]] = {}
        for i, job in enumerate(batch):
            groups.setdefault(job.labels, []).append(i)
        outcomes: list[BatchedPrediction | BaseException] = [RuntimeError("not run")] * len(batch)
        for labels, members in groups.items():
            options: dict[str, Any] = {
                "top_k": max(batch[i].top_k for i in members),
                "batch_size": len(members),
            }
            if labels is not None:
                options["candidate_labels"] = list(labels)
            started = time.perf_counter()
            try:
                predictions = self.classifier.classify_batch([batch[i].source for i in members], **options)
            except Exception as exc:
                for i in members:
                    outcomes[i] = exc
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            for i, prediction in zip(members, predictions):
                job = batch[i]
                trimmed = replace(
                    prediction,
                    path=job.path,
                    labels=prediction.labels[: job.top_k],
                    scores=prediction.scores[: job.top_k],
                    class_ids=prediction.class_ids[: job.top_k],
                )
                outcomes[i] = BatchedPrediction(trimmed, len(members), elapsed_ms)
        return outcomes
