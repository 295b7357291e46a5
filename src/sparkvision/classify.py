"""The core: decode → preprocess → ONNX Runtime → top-k, streaming and with bounded memory.

:class:`Classifier` is what every front uses (CLI, Python API, Spark workers, the web service)::

    from sparkvision import Classifier

    clf = Classifier.pretrained()                    # efficientnet_lite0, converted on first use
    for p in clf.classify("photos/", top_k=3):
        print(p.path, p.labels, p.scores, p.error)

Inputs are streamed: a thread pool decodes and preprocesses the next images (Pillow and ONNX Runtime
both release the GIL) while the current batch runs, with at most two batches in flight, so memory stays
flat however large the folder. Every input yields exactly one :class:`Prediction`, in input order; an
image that cannot be read gets ``error`` set and no labels, and never stops the batch.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .engine import Engine, default_threads, forget_engines, get_engine
from .errors import ConfigError, ImageDecodeError, InputNotFoundError, ModelFormatError, SparkvisionError
from .images import DEFAULT_MAX_PIXELS, DecodedImage, decode_image, iter_image_files
from .models.catalogue import DEFAULT_MODEL, get_entry, resolve_model
from .models.spec import MODEL_FILE, ModelSpec
from .models.store import cached_model_dir
from .preprocess import PreprocessSpec, preprocess

__all__ = ["DEFAULT_BATCH_SIZE", "Classifier", "Prediction", "PreparedImage"]

log = logging.getLogger(__name__)

_REBUILD_LOCK = threading.Lock()

#: Images per ONNX Runtime call. Measured with benchmarks/throughput.py (see README): throughput is
#: flat from 8 to 32 on 2 cores; 16 keeps latency and memory low.
DEFAULT_BATCH_SIZE = 16


def draft_short_side(spec: PreprocessSpec) -> int:
    """The decode hint for :func:`decode_image`: JPEGs may be decoded reduced (``draft``) as long as
    their short side stays at least twice the resize target — measured 0.99 top-1 agreement with full
    decoding, where reducing to the target itself gave 0.97."""
    return 2 * spec.resize_short_side


def crop_window_resize(decoded: DecodedImage, spec: PreprocessSpec) -> bool:
    """Whether to resample only the crop window (see :func:`sparkvision.preprocess.resize_and_crop`).

    Only for large downscales — a draft-reduced JPEG, or a short side at least twice the resize
    target — where it saves a third of the decode-and-preprocess time. Smaller images take the exact
    path, bit-identical to the reference frameworks' resize-then-crop; the window can move a few
    pixels (about 3 in 100,000 values) by one level through float rounding.
    """
    return decoded.reduced or min(decoded.image.size) >= 2 * spec.resize_short_side


@dataclass(frozen=True)
class Prediction:
    """The result for one input image.

    ``labels``/``scores``/``class_ids`` are the top-k, best first (empty when ``error`` is set).
    ``path`` is the file path for file inputs, else ``None``; ``index`` is the input's position.
    ``width``/``height`` are the image's true size (after EXIF rotation) when it could be read.
    """

    path: str | None
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    class_ids: tuple[int, ...] = ()
    error: str | None = None
    index: int = 0
    width: int | None = None
    height: int | None = None
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        """The top-1 label, or ``None`` for an error row."""
        return self.labels[0] if self.labels else None

    @property
    def score(self) -> float | None:
        return self.scores[0] if self.scores else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record the CLI, the web service and the docs use."""
        record: dict[str, Any] = {
            "path": self.path,
            "labels": list(self.labels),
            "scores": [round(float(s), 6) for s in self.scores],
            "class_ids": list(self.class_ids),
            "error": self.error,
        }
        if self.embedding is not None:
            record["embedding"] = [float(v) for v in self.embedding]
        return record


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded and preprocessed for one model: the tensor it takes (3×S×S float32).

    Made by :meth:`Classifier.prepare`, so that a front can do the per-image work in its own threads
    as inputs arrive, and batching later only stacks tensors (the web service prepares each upload
    while other requests' batches run). ``preprocess`` is the spec it was made with: a classifier
    whose preprocessing differs refuses it (an error row), never classifies it silently.
    """

    pixels: np.ndarray
    width: int
    height: int
    preprocess: PreprocessSpec


#: Inputs that are one image each (anything else iterable is a collection of inputs).
_SINGLE_INPUTS = (
    str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray, DecodedImage, PreparedImage,
)  # fmt: skip


@dataclass
class _Loaded:
    pixels: np.ndarray | None
    width: int | None = None
    height: int | None = None
    error: str | None = None


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    logits = logits.astype(np.float32, copy=True)
    if activation == "softmax":
        return _softmax(logits)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` best scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    return ids, np.take_along_axis(values, order, axis=1)


class Classifier:
    """Classifies images with one model. Cheap to create; the ONNX session is loaded on first use.

    Args:
        model_dir: a sparkvision model directory (see :func:`Classifier.pretrained` for names).
        spec: the model's spec (read from ``model_dir`` when omitted).
        threads: cores to use (default: physical cores). A stream of many images runs that many
            batches at once, each decoded and inferred on one core ("lanes", ONNX Runtime with one
            intra-op thread); a single batch (``classify_batch`` of one batch's worth, as the web
            service calls it) runs on ONNX Runtime with this many intra-op threads.
        decode_workers: set it to use the pipelined mode instead of lanes: this many threads decode
            and preprocess ahead of one inference at a time on ``threads`` intra-op threads (0:
            decode inline). Lanes measured 6-9 % faster end to end than this mode in paired runs on a
            2-core AVX-512 machine, and about level in an earlier experiment on an AVX2 one.
        max_pixels: images with more pixels are refused (decompression-bomb guard).
    """

    def __init__(
        self,
        model_dir: str | Path,
        spec: ModelSpec | None = None,
        *,
        threads: int | None = None,
        decode_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._spec = spec
        self.threads = threads
        self.decode_workers = decode_workers
        self.max_pixels = max_pixels
        self._catalogue_name: str | None = None

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def pretrained(cls, name: str = DEFAULT_MODEL, **options: Any) -> Classifier:
        """A classifier for a catalogue name, a cached model or a model directory path.

        Catalogue models that ship with a Python package (``efficientnet_lite0/1/2``) are converted
        into the cache on first use; later calls load the cached directory.
        """
        model_dir, spec = resolve_model(name)
        classifier = cls(model_dir, spec, **options)
        classifier._catalogue_name = name
        return classifier

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            from .models.store import load_model_dir

            self._spec = load_model_dir(self.model_dir)
        return self._spec

    @property
    def engine(self) -> Engine:
        """The engine for single batches (``threads`` intra-op threads), shared process-wide."""
        return self._engine(self.threads)

    def _engine(self, threads: int | None) -> Engine:
        return get_engine(self.model_dir / MODEL_FILE, threads)

    def _run(self, batch: np.ndarray, outputs: list[str], *, lane: bool = False) -> list[np.ndarray]:
        """Run the engine (a one-thread one in a lane); a damaged cached catalogue model is rebuilt
        once, then retried."""
        threads = 1 if lane else self.threads
        try:
            return self._engine(threads).run(batch, outputs)
        except ModelFormatError:
            name = getattr(self, "_catalogue_name", None)
            entry = get_entry(name) if name else None
            if entry is None or entry.build is None or self.model_dir != cached_model_dir(entry.name):
                raise
            with _REBUILD_LOCK:  # two lanes may find the damage at once: rebuild once
                try:
                    return self._engine(threads).run(batch, outputs)
                except ModelFormatError:
                    log.warning("model file in %s is damaged; rebuilding %s", self.model_dir, entry.name)
                    resolve_model(entry.name, rebuild=True)
                    forget_engines()
            return self._engine(threads).run(batch, outputs)

    def __repr__(self) -> str:
        return f"Classifier({self.spec.name!r}, model_dir={str(self.model_dir)!r})"

    # -- public API -------------------------------------------------------------------------------
    def classify(
        self,
        inputs: Any,
        *,
        top_k: int | None = None,
        batch_size: int | None = None,
        recursive: bool = False,
        threshold: float | None = None,
        embeddings: bool = False,
        progress: Any = None,
        candidate_labels: Sequence[str] | str | None = None,
    ) -> Iterator[Prediction]:
        """Classify images lazily, yielding one :class:`Prediction` per input in input order.

        ``inputs``: a file or folder path, bytes, a Pillow image, a numpy array (H×W×3 RGB), or an
        iterable of those (folders are expanded; ``recursive`` descends into subfolders).
        ``top_k``: labels per image (default 5, or the class count when the model has fewer).
        ``threshold`` keeps only labels scoring at least that much (useful for multi-label models).
        ``embeddings`` also returns the image embedding (for models that export one).
        ``progress``: an object with ``update(n)`` (e.g. a tqdm bar), called after each batch.
        ``candidate_labels``: the labels to choose from, for zero-shot models (CLIP); see
        :mod:`sparkvision.zero_shot`.
        """
        spec = self.spec
        # -- zero-shot models (issue 4): the maths lives in zero_shot.py, which wraps this classifier.
        if candidate_labels is not None or spec.task == "zero-shot":
            from .zero_shot import classify_zero_shot

            yield from classify_zero_shot(
                self, inputs, candidate_labels, top_k=top_k, batch_size=batch_size, recursive=recursive,
                threshold=threshold, embeddings=embeddings, progress=progress,
            )  # fmt: skip
            return
        # -- end zero-shot
        k = self._check_top_k(top_k)
        if embeddings and not spec.has_embeddings:
            raise ConfigError(f"model {spec.name!r} does not export image embeddings")
        outputs = ["logits", "embeddings"] if embeddings else ["logits"]
        size = batch_size or DEFAULT_BATCH_SIZE
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}")
        lanes = self._lanes(inputs, size)
        sources = enumerate(iter_sources(inputs, recursive=recursive))
        if lanes:
            batches = self._lane_batches(sources, size, lanes, outputs, k, threshold)
        else:
            batches = (
                list(self._predict_chunk(chunk, outputs, k, threshold))
                for chunk in self._loaded_batches(sources, size)
            )
        for predictions in batches:
            yield from predictions
            if progress is not None:
                progress.update(len(predictions))

    def classify_batch(self, sources: Sequence[Any], **options: Any) -> list[Prediction]:
        """Classify a list of in-memory sources (``None`` entries become error rows); same order."""
        return list(self.classify_sources(sources, **options))

    def classify_sources(self, sources: Iterable[Any], **options: Any) -> Iterator[Prediction]:
        """Classify a stream of in-memory sources lazily (bytes, images, arrays, decoded images;
        ``None`` becomes an error row), one prediction per source, in order.

        Unlike :meth:`classify`, strings are never taken for paths, and the stream is read only a
        few batches ahead of inference — so a long stream (a Spark partition arriving in Arrow
        batches) flows through in full batches, never restarting at the stream's own chunk
        boundaries.
        """
        return self.classify(_InMemorySources(sources), **options)

    def embed(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        recursive: bool = False,
        candidate_labels: Sequence[str] | str | None = None,
    ) -> Iterator[Prediction]:
        """Image embeddings (``Prediction.embedding``), with the top-1 label alongside.

        For a zero-shot model without ``candidate_labels`` the predictions carry no labels.
        """
        if self.spec.task == "zero-shot" and candidate_labels is None:  # issue 4: CLIP image embeddings
            from .zero_shot import embed_images

            return embed_images(self, inputs, batch_size=batch_size, recursive=recursive)
        return self.classify(
            inputs, top_k=1, batch_size=batch_size, recursive=recursive, embeddings=True,
            candidate_labels=candidate_labels,
        )  # fmt: skip

    # -- internals --------------------------------------------------------------------------------
    def _check_top_k(self, top_k: int | None) -> int:
        classes = self.spec.num_classes
        if top_k is None:
            return min(5, classes)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1 or top_k > classes:
            raise ConfigError(
                f"top_k must be between 1 and {classes} (the model's class count), got {top_k!r}"
            )
        return top_k

    def prepare(self, source: Any, *, max_pixels: int | None = None) -> PreparedImage:
        """Decode and preprocess one image (a path, bytes, a Pillow image, an H×W×3 array, a decoded
        image) for this classifier's model; classify the result later, alone or batched.

        ``max_pixels`` overrides the classifier's decompression-bomb limit. Raises
        :class:`~sparkvision.errors.ImageDecodeError` for an image that cannot be read — also when a
        decoder fails in an unforeseen way, so that one image never takes its batch down.
        """
        spec = self.spec.preprocess
        if isinstance(source, PreparedImage):
            if source.preprocess != spec:
                raise ConfigError(
                    f"this image was prepared for another model's preprocessing, not {self.spec.name!r}'s"
                )
            return source
        try:
            if isinstance(source, DecodedImage):
                decoded = source
            else:
                limit = self.max_pixels if max_pixels is None else max_pixels
                decoded = decode_image(source, max_pixels=limit, min_short_side=draft_short_side(spec))
            pixels = preprocess(decoded.image, spec, window=crop_window_resize(decoded, spec))
        except SparkvisionError:
            raise
        except Exception as exc:  # a decoder bug
            raise ImageDecodeError(
                f"unexpected error while reading the image: {exc.__class__.__name__}: {exc}"
            ) from exc
        return PreparedImage(pixels, decoded.width, decoded.height, spec)

    def _load(self, source: Any) -> _Loaded:
        try:
            if source is None:
                return _Loaded(None, error="no image data (null input)")
            prepared = self.prepare(source)
            return _Loaded(prepared.pixels, prepared.width, prepared.height)
        except SparkvisionError as exc:  # prepare() turns a decoder bug into ImageDecodeError too
            return _Loaded(None, error=str(exc))

    def _lanes(self, inputs: Any, size: int) -> int:
        """How many batches to run at once: one per core for a stream of images; 0 for the
        pipelined mode, which the caller chose (``decode_workers``) or which one batch's worth of
        in-memory images gets (every core on that batch, through intra-op threads: latency).

        With one core (a Spark task's ``spark.task.cpus=1``) that is one lane: decoding and
        inference take turns in one thread, which measured 6 % faster in Spark's Python workers
        than overlapping them with decode threads on the core the other worker uses."""
        if self.decode_workers is not None:
            return 0
        items = inputs.items if isinstance(inputs, _InMemorySources) else None
        if isinstance(items, Sized) and len(items) <= size:
            return 0
        return self.threads or default_threads()

    def _lane_batches(
        self,
        sources: Iterator[tuple[int, tuple[Any, str | None]]],
        size: int,
        lanes: int,
        outputs: list[str],
        k: int,
        threshold: float | None,
    ) -> Iterator[list[Prediction]]:
        """Predictions per batch, in input order; ``lanes`` batches are decoded and inferred at once,
        each in its own thread on a one-thread ONNX Runtime session (no intra-op synchronisation,
        and decoding never competes with a multi-threaded inference for the same cores)."""

        def run(batch: list[tuple[int, tuple[Any, str | None]]]) -> list[Prediction]:
            chunk = [(index, path, self._load(source)) for index, (source, path) in batch]
            return list(self._predict_chunk(chunk, outputs, k, threshold, lane=True))

        with ThreadPoolExecutor(lanes, thread_name_prefix="sparkvision-lane") as pool:
            pending: deque[Future[list[Prediction]]] = deque()
            while batch := list(itertools.islice(sources, size)):
                pending.append(pool.submit(run, batch))
                # Up to two batches per lane in flight: a lane that finishes early (small photos)
                # starts another batch instead of waiting for the oldest to be handed over.
                if len(pending) > 2 * lanes:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _loaded_batches(
        self, sources: Iterator[tuple[int, tuple[Any, str | None]]], size: int
    ) -> Iterator[list[tuple[int, str | None, _Loaded]]]:
        workers = self.decode_workers if self.decode_workers is not None else min(2, default_threads() + 1)
        if workers <= 0:
            chunk: list[tuple[int, str | None, _Loaded]] = []
            for index, (source, path) in sources:
                chunk.append((index, path, self._load(source)))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="sparkvision-decode") as pool:
            pending: deque[tuple[int, str | None, Future[_Loaded]]] = deque()

            def fill() -> None:
                while len(pending) < 2 * size:
                    try:
                        index, (source, path) = next(sources)
                    except StopIteration:
                        return
                    pending.append((index, path, pool.submit(self._load, source)))

            fill()
            while pending:
                head = [pending.popleft() for _ in range(min(size, len(pending)))]
                fill()  # queue the next images before waiting, so decoding overlaps inference
                yield [(index, path, future.result()) for index, path, future in head]

    def _predict_chunk(
        self,
        chunk: list[tuple[int, str | None, _Loaded]],
        outputs: list[str],
        k: int,
        threshold: float | None,
        *,
        lane: bool = False,
    ) -> Iterator[Prediction]:
        spec = self.spec
        good = [i for i, (_, _, loaded) in enumerate(chunk) if loaded.pixels is not None]
        results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        if good:
            batch = np.stack([chunk[i][2].pixels for i in good])
            started = time.perf_counter()
            raw = self._run(batch, outputs, lane=lane)
            self.last_inference_seconds = time.perf_counter() - started
            if raw[0].shape != (len(good), spec.num_classes):
                raise SparkvisionError(
                    f"model {spec.name!r} returned logits of shape {raw[0].shape}, expected "
                    f"({len(good)}, {spec.num_classes}); the model directory does not match its labels"
                )
            scores = _activate(raw[0], spec.activation)
            ids, values = top_k(scores, k)
            for row, i in enumerate(good):
                results[i] = (ids[row], values[row], raw[1][row] if len(raw) > 1 else None)
        for i, (index, path, loaded) in enumerate(chunk):
            if i not in results:
                yield Prediction(path=path, error=loaded.error, index=index)
                continue
            row_ids, row_scores, embedding = results[i]
            if threshold is not None:
                keep = row_scores >= threshold
                row_ids, row_scores = row_ids[keep], row_scores[keep]
            yield Prediction(
                path=path,
                labels=tuple(spec.labels[c] for c in row_ids),
                scores=tuple(float(s) for s in row_scores),
                class_ids=tuple(int(c) for c in row_ids),
                index=index,
                width=loaded.width,
                height=loaded.height,
                embedding=embedding,
            )


class _InMemorySources:
    """Marks an iterable whose items are all in-memory sources, never paths to expand."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def iter_sources(inputs: Any, *, recursive: bool = False) -> Iterator[tuple[Any, str | None]]:
    """Flatten classifier inputs into ``(source, path-or-None)`` pairs, streaming folder contents.

    A single path that does not exist raises :class:`InputNotFoundError`; inside a list, a missing
    file becomes that row's error instead, so one bad name doesn't lose the others' results.
    """
    if isinstance(inputs, _InMemorySources):
        for item in inputs.items:
            yield item, None
        return
    if isinstance(inputs, _SINGLE_INPUTS):
        if isinstance(inputs, (str, os.PathLike)) and not Path(inputs).exists():
            raise InputNotFoundError(f"{os.fspath(inputs)} does not exist")
        inputs = [inputs]
    elif not isinstance(inputs, Iterable):
        raise ConfigError(f"cannot classify a {type(inputs).__name__}: give paths, bytes, images or arrays")
    for item in inputs:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                for file in iter_image_files([path], recursive=recursive):
                    yield file, str(file)
            else:
                yield path, os.fspath(item)
        else:
            yield item, None
