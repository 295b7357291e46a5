"""Which models the service can use, their loading state, and their batchers.

Clients name models; they never give paths. A name is accepted only when it is the model the server
was started with, one it was told to preload, a model already in the local cache (looked up by
name, so nothing a client sends reaches the file system as a path), or a catalogue name. A catalogue
model that is not built yet is built on first use (about a second for the EfficientNet-Lite family,
offline) unless the operator turned that off (``build_models=False``, ``--no-build``).

Loading (resolving or building the model, creating the ONNX Runtime session, one warm-up run) happens
in a background thread; meanwhile requests for that model get 503 with ``Retry-After`` and the code
``model_loading`` (``model_building`` when it is being built).

At most ``max_models`` models are loaded at once. Loading one more first unloads the least recently
used model that is idle (no request in progress); the default model is never unloaded. When every
loaded model is busy, the request gets 503 and may retry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, ModelNotFoundError
from ..models.catalogue import canonical_name, get_entry, list_models
from ..models.spec import ModelSpec
from ..models.store import cached_model_dir, is_model_dir, load_model_dir, validate_model_name
from .batching import MicroBatcher
from .errors import ApiError
from .limits import overloaded
from .settings import ServeSettings

__all__ = ["Loader", "ModelRegistry", "ModelSlot", "load_classifier"]

log = logging.getLogger(__name__)

State = Literal["unloaded", "loading", "ready", "failed"]
#: Builds a ready classifier from a model name or directory (runs in a background thread).
Loader = Callable[[str, ServeSettings], Any]


def load_classifier(source: str, settings: ServeSettings) -> Any:
    """The default loader: resolve (build on first use), open the session and warm it up."""
    from ..tasks import load

    # the class the model's task names: a classifier, a zero-shot classifier or a captioner
    classifier = load(source, threads=settings.threads, max_pixels=settings.max_pixels)
    spec = classifier.spec
    _ = classifier.engine.session  # create the ONNX Runtime session now, not on the first request
    if spec.task == "classification":
        size = spec.preprocess.size
        classifier.classify_batch([np.full((size, size, 3), 127, dtype=np.uint8)], top_k=1)
    return classifier


def _idle(slot: ModelSlot) -> bool:
    """No image of any request is being decoded for, or waiting for, this model's batcher."""
    return slot.batcher is None or (slot.batcher.queued == 0 and slot.batcher.in_progress == 0)


def _is_cached(name: str) -> bool:
    try:
        return is_model_dir(cached_model_dir(name))
    except ConfigError:  # not a valid model name at all
        return False


@dataclass
class ModelSlot:
    """One model the service knows: where it comes from, its state, and (once ready) its batcher."""

    name: str
    source: str
    state: State = "unloaded"
    classifier: Any = None
    batcher: MicroBatcher | None = None
    error: str | None = None
    load_seconds: float | None = None
    #: True while the model is built from its catalogue source on first use.
    building: bool = False
    last_used: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def spec(self) -> ModelSpec:
        return self.classifier.spec


class ModelRegistry:
    """The models a running service may use, keyed by public name."""

    def __init__(
        self,
        default: str,
        settings: ServeSettings,
        executor: Executor,
        loader: Loader = load_classifier,
        on_batch: Callable[[str, int, float], None] | None = None,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        """``on_batch(model, size, seconds)`` sees every model call; ``on_evict(model)`` every unload."""
        self.settings = settings
        self._on_batch = on_batch
        self._on_evict = on_evict
        self._executor = executor
        self._loader = loader
        self._slots: dict[str, ModelSlot] = {}
        self.default_name = self._add_operator_model(default)
        for extra in settings.preload:
            self._add_operator_model(extra)

    # -- names ------------------------------------------------------------------------------------
    def _add_operator_model(self, name_or_path: str) -> str:
        """Models named by whoever started the server: catalogue names, cache names or directories."""
        text = str(name_or_path)
        if Path(text).expanduser().is_dir():
            # A directory given by the operator: its public name is the one in its spec.
            name = load_model_dir(Path(text).expanduser()).name
            source = str(Path(text).expanduser())
        else:
            name = canonical_name(text)
            source = name
            known = get_entry(name) is not None
            if not known and ("/" in text or "\\" in text or not _is_cached(name)):
                # Fail at start-up, not in the background loader: the operator is watching now.
                raise ModelNotFoundError(
                    f"unknown model {text!r}: not a model directory, a catalogue name or a cached model; "
                    f"run `sparkvision models list` to see the names"
                )
        self._slots.setdefault(name, ModelSlot(name=name, source=source))
        return name

    def names(self) -> list[str]:
        """Every model name clients may use right now (server models plus the cache)."""
        names = set(self._slots)
        names.update(row.name for row in list_models() if row.cached or self.settings.build_models)
        return sorted(names)

    def slot(self, requested: str | None) -> ModelSlot:
        """The slot for a client-given name (``None``: the default); 404 for anything unusable."""
        if requested is None or requested == "":
            return self._slots[self.default_name]
        try:
            name = canonical_name(validate_model_name(requested))
        except ConfigError:
            raise self._unknown(requested) from None
        slot = self._slots.get(name)
        if slot is not None:
            return slot
        cached = cached_model_dir(name)
        if is_model_dir(cached):
            # Loaded from the cache directory by path: the client's text never becomes a path.
            slot = self._slots.setdefault(name, ModelSlot(name=name, source=str(cached)))
            return slot
        entry = get_entry(name)
        if entry is not None and self.settings.build_models:
            # Built from the catalogue's own source, by name: never from anything the client sent.
            return self._slots.setdefault(name, ModelSlot(name=name, source=name, building=True))
        if entry is not None:
            raise ApiError(
                404,
                "model_not_available",
                f"model {name!r} is in the catalogue but not built on this server, and this server "
                f"does not build models on request; ask the operator to run "
                f"`sparkvision models info {name}` (which builds it) and retry. "
                f"Available: {', '.join(self.names())}",
                models=self.names(),
            )
        raise self._unknown(requested)

    def _unknown(self, requested: str) -> ApiError:
        names = self.names()
        return ApiError(
            404,
            "unknown_model",
            f"unknown model {requested!r}; available models: {', '.join(names)}",
            models=names,
        )

    # -- loading ----------------------------------------------------------------------------------
    def start_loading(self, slot: ModelSlot) -> None:
        """Begin loading in a background thread (no-op unless the slot is unloaded)."""
        with slot._lock:
            if slot.state != "unloaded":
                return
            slot.state = "loading"
        thread = threading.Thread(
            target=self._load, args=(slot,), name=f"sparkvision-load-{slot.name}", daemon=True
        )
        thread.start()

    def _load(self, slot: ModelSlot) -> None:
        started = time.perf_counter()
        try:
            classifier = self._loader(slot.source, self.settings)
        except Exception as exc:
            log.exception("model %s failed to load", slot.name)
            slot.error = f"{exc.__class__.__name__}: {exc}" if not str(exc) else str(exc)
            slot.state = "failed"
            return
        slot.classifier = classifier
        on_batch = self._on_batch
        slot.batcher = MicroBatcher(
            classifier,
            self._executor,
            max_batch=self.settings.max_batch,
            max_wait_s=self.settings.max_wait_ms / 1000.0,
            max_queue=self.settings.max_queue,
            on_batch=(lambda size, seconds: on_batch(slot.name, size, seconds)) if on_batch else None,
        )
        slot.load_seconds = time.perf_counter() - started
        slot.last_used = time.monotonic()
        how = "built and ready" if slot.building else "ready"
        slot.building = False
        slot.state = "ready"
        log.info("model %s %s in %.1f s", slot.name, how, slot.load_seconds)

    def ready_slot(self, requested: str | None) -> ModelSlot:
        """A snapshot of the slot, ready for inference; otherwise 503 (loading, starts loading) or 500
        (failed).

        The snapshot holds this request's references to the classifier and its batcher, so the
        request finishes normally even if the model is unloaded meanwhile to make room for another.
        """
        slot = self.slot(requested)
        if slot.state == "ready":
            slot.last_used = time.monotonic()
            return replace(slot)
        if slot.state == "failed":
            raise ApiError(
                500,
                "model_failed",
                f"model {slot.name!r} failed to load: {slot.error}. Check the server log; restart the "
                f"server once the model is fixed.",
            )
        if slot.state == "unloaded":
            self._make_room()
        self.start_loading(slot)
        if slot.building:
            raise ApiError(
                503,
                "model_building",
                f"model {slot.name!r} is being built on first use; retry in a few seconds",
                headers={"Retry-After": "2"},
            )
        raise ApiError(
            503,
            "model_loading",
            f"model {slot.name!r} is loading; retry in a few seconds",
            headers={"Retry-After": "2"},
        )

    def loaded_count(self) -> int:
        return sum(slot.state in ("loading", "ready") for slot in self._slots.values())

    def _make_room(self) -> None:
        """Unload least recently used idle models until one more fits under ``max_models``."""
        while self.loaded_count() >= self.settings.max_models:
            idle = [
                slot
                for slot in self._slots.values()
                if slot.state == "ready" and slot.name != self.default_name and _idle(slot)
            ]
            if not idle:
                raise overloaded(
                    f"{self.loaded_count()} models are loaded and in use (limit {self.settings.max_models})",
                    retry_after=2,
                )
            self.evict(min(idle, key=lambda slot: slot.last_used))

    def evict(self, slot: ModelSlot) -> None:
        """Unload an idle model (event loop thread); it loads again when next asked for."""
        batcher = slot.batcher
        slot.classifier = None
        slot.batcher = None
        slot.state = "unloaded"
        if batcher is not None:
            asyncio.get_running_loop().create_task(batcher.close())
        log.info(
            "model %s unloaded (least recently used; at most %d models are loaded)",
            slot.name,
            self.settings.max_models,
        )
        if self._on_evict is not None:
            self._on_evict(slot.name)

    def slots(self) -> list[ModelSlot]:
        return list(self._slots.values())

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.batcher is not None:
                await slot.batcher.close()

    # -- description ------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Rows for ``GET /v1/models``: every catalogue and cached model, with what this server can do."""
        rows: dict[str, dict[str, Any]] = {}
        for row in list_models():
            rows[row.name] = {
                "name": row.name,
                "family": row.family,
                "task": row.task,
                "input_size": row.input_size,
                "num_classes": row.num_classes,
                "license": row.license,
                "description": row.description,
                "cached": row.cached,
                "available": row.cached or self.settings.build_models,
                "state": "unloaded" if row.cached else "not_built",
                "default": False,
            }
        for slot in self._slots.values():
            row = rows.setdefault(
                slot.name,
                {
                    "name": slot.name,
                    "family": None,
                    "task": None,
                    "input_size": None,
                    "num_classes": None,
                    "license": None,
                    "description": "",
                    "cached": False,
                },
            )
            row["available"] = True
            row["state"] = "building" if slot.building and slot.state == "loading" else slot.state
            row["default"] = slot.name == self.default_name
            if slot.state == "ready":
                spec = slot.spec
                row.update(
                    family=spec.family,
                    task=spec.task,
                    input_size=spec.preprocess.size,
                    num_classes=spec.num_classes or None,
                    license=spec.license or row.get("license"),
                )
            if slot.state == "failed":
                row["error"] = slot.error
        return sorted(rows.values(), key=lambda r: (not r["default"], r["name"]))
