"""What runs inside Spark's Python workers: batched classification and captioning with a per-process
model cache.

The classifier stage sends only a small :class:`ClassifyJob` (a model reference and a few options, a
few hundred bytes) to the executors — never the model. Each Python worker resolves the model
directory (shipped with ``SparkContext.addFile``, see :mod:`.shipping`) and keeps one
:class:`~sparkvision.Classifier` per (model, preprocessing, threads) in a module-level cache; the
ONNX Runtime session itself is cached by :func:`sparkvision.engine.get_engine`. Spark reuses Python
workers between tasks (``spark.python.worker.reuse``, on by default), so a worker loads a model once
and classifies every later batch and task with it.

Rows arrive as Arrow batches (an iterator pandas UDF; Spark bounds each batch by
``spark.sql.execution.arrow.maxRecordsPerBatch`` and ``...maxBytesPerBatch``) and are classified in
chunks of the stage's ``batchSize`` by the same core as the CLI. Every row yields exactly one
annotation, in order; a row that cannot be read yields an annotation with ``metadata["error"]``.

The captioning stage sends a :class:`CaptionJob` and gets ``document`` annotations through the same
pieces: the cache (the model's task decides the class: a :class:`~sparkvision.tasks.captioning.Captioner`
for a captioning model), the row-to-source conversion and the frame streaming.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from ..errors import ConfigError, ImageDecodeError, ModelFormatError
from ..images import decode_bgr_struct
from ..models.store import is_model_dir, load_model_dir
from ..preprocess import PreprocessSpec
from ..results import Prediction
from ..tasks.base import ImageTask, for_model
from ..tasks.captioning import Caption, Captioner
from ..tasks.labelling import LabelTask
from .annotations import (
    CATEGORY_ANNOTATION,
    CATEGORY_ANNOTATION_FROM_PYTHON,
    DOCUMENT_ANNOTATION,
    DOCUMENT_ANNOTATION_FROM_PYTHON,
    ImageInput,
    category_annotation,
    document_annotation,
)

__all__ = [
    "CaptionJob",
    "ClassifyJob",
    "caption_batches",
    "caption_images",
    "classify_images",
    "make_caption_udf",
    "make_classify_udf",
    "worker_cache_info",
    "worker_captioner",
    "worker_classifier",
]

_OUTPUT_COLUMNS = [f.name for f in CATEGORY_ANNOTATION.fields]
R = TypeVar("R")


@dataclass(frozen=True)
class ClassifyJob:
    """Everything an executor needs to classify rows (small: it is pickled into every task).

    ``model_ref`` names the model directory among the files added with ``SparkContext.addFile``;
    ``preprocess`` is the effective :class:`PreprocessSpec` (the stage's params applied) as a dict.
    ``threads``: ONNX Runtime threads per task, 0 meaning ``spark.task.cpus``.
    ``candidate_labels``: the labels a zero-shot (CLIP) model chooses from; ``None`` for classifiers.
    ``prompt_template``: how a zero-shot model turns each label into its text (``"{}"``: as written);
    ``None`` keeps the model's own template.
    """

    model_ref: str
    preprocess: dict[str, Any] = field(hash=False)
    top_k: int = 5
    batch_size: int = 2
    embeddings: bool = False
    threads: int = 0
    decode_workers: int | None = None
    candidate_labels: tuple[str, ...] | None = None
    prompt_template: str | None = None


# -- the per-process cache ---------------------------------------------------------------------------
_CACHE: dict[tuple[str, str, int | None, int | None, str | None], LabelTask] = {}
_CACHE_LOCK = threading.Lock()
_STATS = {"sessions_created": 0, "batches": 0, "rows": 0}


def worker_classifier(
    model_dir: str | Path,
    preprocess: dict[str, Any],
    *,
    threads: int | None = None,
    decode_workers: int | None = None,
    prompt_template: str | None = None,
) -> LabelTask:
    """The process-wide classifier for a model directory and preprocessing (created on first use);
    ``prompt_template`` replaces a zero-shot model's own."""
    key = (str(model_dir), json.dumps(preprocess, sort_keys=True), threads, decode_workers, prompt_template)
    with _CACHE_LOCK:
        classifier = _CACHE.get(key)
        if classifier is None:
            spec = load_model_dir(model_dir)
            spec = spec.with_changes(preprocess=PreprocessSpec.from_dict(dict(preprocess)))
            if prompt_template is not None:
                spec = spec.with_changes(extra={**spec.extra, "prompt_template": prompt_template})
            classifier = for_model(model_dir, spec, threads=threads, decode_workers=decode_workers)
            engine = classifier.engine  # shared by every classifier of this model file and threads
            if engine._session is None:
                _ = engine.session  # load now, under the lock: one session per model per process
                _STATS["sessions_created"] += 1
            _CACHE[key] = classifier
        return classifier


def worker_cache_info() -> dict[str, Any]:
    """This process's cache, for tests and diagnosis: ONNX sessions created, classifiers cached,
    distinct model directories among them, batches and rows classified, and the process id."""
    with _CACHE_LOCK:
        return {
            **_STATS,
            "classifiers": len(_CACHE),
            "model_dirs": len({(key[0], key[2]) for key in _CACHE}),
            "model_paths": sorted({key[0] for key in _CACHE}),
            "pid": os.getpid(),
        }


def _task_threads(job: ClassifyJob | CaptionJob) -> int | None:
    if job.threads > 0:
        return job.threads
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.cpus() if context is not None else None


def _shipped_model_dir(job: ClassifyJob | CaptionJob) -> Path:
    from pyspark import SparkFiles

    path = Path(SparkFiles.get(job.model_ref)).resolve()  # the root is relative ('.') on executors
    if not is_model_dir(path):
        raise ModelFormatError(
            f"the model directory {job.model_ref!r} did not reach this executor ({path} is not a "
            "sparkvision model); it is distributed with SparkContext.addFile by the classifier stage"
        )
    return path


# -- classification of one batch --------------------------------------------------------------------
def _as_int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _source(image: ImageInput) -> tuple[Any, str | None]:
    """What the core classifies for one image annotation, or the error that row already has.

    Spark image-source rows (raw BGR/BGRA/gray) are converted to RGB here; encoded files (binaryFile)
    go to the core as bytes and are decoded there, exactly as the CLI decodes files.
    """
    if image.error is not None:
        return None, image.error
    if image.data is None:
        return None, None  # the core's "no image data" error
    if image.encoded:
        return bytes(image.data), None
    try:
        decoded = decode_bgr_struct(
            _as_int(image.height) or 0,
            _as_int(image.width) or 0,
            _as_int(image.n_channels) or 0,
            _as_int(image.mode) if image.mode is not None else -1,
            bytes(image.data),
        )
    except ImageDecodeError as exc:
        return None, str(exc)
    return decoded, None


def _with_inputs(
    images: Iterable[ImageInput], run: Callable[[Iterator[Any]], Iterable[R]]
) -> Iterator[tuple[ImageInput, str | None, R]]:
    """Feed the images' sources to a core task's stream (``run``) and pair each result with its image
    and the error that row already had; streamed: the core reads ``images`` only as far as its
    decoding runs ahead of inference. The core yields one result per source, in order."""
    rows: deque[tuple[ImageInput, str | None]] = deque()

    def sources() -> Iterator[Any]:
        for image in images:
            source, error = _source(image)
            rows.append((image, error))
            yield source

    for result in run(sources()):
        image, error = rows.popleft()
        yield image, error, result
    if rows:  # the core's contract; a mismatch would misalign rows
        raise RuntimeError(f"{len(rows)} images got no result")


def _annotations(
    classifier: LabelTask,
    images: Iterable[ImageInput],
    *,
    top_k: int,
    batch_size: int,
    embeddings: bool,
    candidate_labels: Sequence[str] | None,
) -> Iterator[dict[str, Any]]:
    """One category annotation per image, in order, streamed."""

    def run(sources: Iterator[Any]) -> Iterator[Prediction]:
        return classifier.classify_sources(
            sources,
            top_k=top_k,
            batch_size=batch_size,
            embeddings=embeddings,
            candidate_labels=candidate_labels,
        )

    for image, error, prediction in _with_inputs(images, run):
        if error is not None:
            prediction = dataclasses.replace(prediction, error=error)
        yield category_annotation(image, prediction)


def classify_images(
    classifier: LabelTask,
    images: Sequence[ImageInput],
    *,
    top_k: int,
    batch_size: int,
    embeddings: bool = False,
    candidate_labels: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Classify image annotations' contents; one category annotation (a dict) per image, in order.

    ``candidate_labels`` go to the core for zero-shot models (it caches their text embeddings per
    process and label set, so a worker computes them once).
    """
    return list(
        _annotations(
            classifier,
            images,
            top_k=top_k,
            batch_size=batch_size,
            embeddings=embeddings,
            candidate_labels=candidate_labels,
        )
    )


def _frame_images(frame: pd.DataFrame) -> list[ImageInput]:
    return [
        ImageInput(
            origin=origin,
            height=_as_int(height),
            width=_as_int(width),
            n_channels=_as_int(channels),
            mode=_as_int(mode),
            data=data,
            encoded=bool(encoded) if encoded is not None else False,
        )
        for origin, height, width, channels, mode, data, encoded in zip(
            frame["origin"],
            frame["height"],
            frame["width"],
            frame["nChannels"],
            frame["mode"],
            frame["data"],
            frame["encoded"],
        )
    ]


def classify_batches(job: ClassifyJob, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The body of the pandas UDF: image rows in, category annotation structs out (same count, order).

    The whole partition is one stream through the core, not one call per Arrow batch: the core's
    batches span Arrow batch boundaries, so none is cut short and no decode pipeline drains and
    refills at each boundary. An iterator pandas UDF may do this — Spark only requires the output,
    in total, to have the input's rows in order — and output frames keep the input frames' sizes.
    """
    first = next(batches, None)
    if first is None:
        return
    classifier = worker_classifier(
        _shipped_model_dir(job),
        job.preprocess,
        threads=_task_threads(job),
        decode_workers=job.decode_workers,
        prompt_template=job.prompt_template,
    )
    annotate = functools.partial(
        _annotations,
        classifier,
        top_k=job.top_k,
        batch_size=job.batch_size,
        embeddings=job.embeddings,
        candidate_labels=job.candidate_labels,
    )
    yield from _annotated_frames(itertools.chain([first], batches), annotate, _OUTPUT_COLUMNS)


def _annotated_frames(
    batches: Iterable[pd.DataFrame],
    annotate: Callable[[Iterator[ImageInput]], Iterator[dict[str, Any]]],
    columns: list[str],
) -> Iterator[pd.DataFrame]:
    """Image-row frames in, annotation frames out (same sizes, same order): every frame's images go
    through one ``annotate`` stream, and a frame is yielded as soon as all its rows are annotated."""
    sizes: deque[int] = deque()

    def images() -> Iterator[ImageInput]:
        for frame in batches:
            sizes.append(len(frame))
            with _CACHE_LOCK:
                _STATS["batches"] += 1
            yield from _frame_images(frame)

    done: list[dict[str, Any]] = []

    def complete_frames() -> Iterator[pd.DataFrame]:
        while sizes and len(done) >= sizes[0]:
            size = sizes.popleft()
            with _CACHE_LOCK:
                _STATS["rows"] += size
            yield pd.DataFrame.from_records(done[:size], columns=columns)
            del done[:size]

    for annotation in annotate(images()):
        done.append(annotation)
        yield from complete_frames()
    yield from complete_frames()  # frames of no rows after the last annotation


def make_classify_udf(job: ClassifyJob):
    """An iterator pandas UDF: struct<origin, height, width, nChannels, mode, data, encoded> → category."""
    from pyspark.sql.functions import pandas_udf

    def classify_images_udf(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return classify_batches(job, batches)

    return pandas_udf(classify_images_udf, returnType=CATEGORY_ANNOTATION_FROM_PYTHON)  # type: ignore[call-overload]


# -- captioning ------------------------------------------------------------------------------------------
_DOCUMENT_COLUMNS = [f.name for f in DOCUMENT_ANNOTATION.fields]


@dataclass(frozen=True)
class CaptionJob:
    """What an executor needs to caption rows: as :class:`ClassifyJob`, with ``generation`` holding
    :meth:`Captioner.caption <sparkvision.tasks.captioning.Captioner.caption>`'s options as
    ``(name, value)`` pairs (``max_length``, ``num_beams``, ``do_sample``...)."""

    model_ref: str
    preprocess: dict[str, Any] = field(hash=False)
    generation: tuple[tuple[str, Any], ...] = ()
    batch_size: int = 2
    threads: int = 0
    decode_workers: int | None = None


def worker_captioner(
    model_dir: str | Path,
    preprocess: dict[str, Any],
    *,
    threads: int | None = None,
    decode_workers: int | None = None,
) -> Captioner:
    """The process-wide captioner for a model directory and preprocessing (created on first use;
    the same cache as :func:`worker_classifier`, which builds whatever task the model names)."""
    task: ImageTask = worker_classifier(model_dir, preprocess, threads=threads, decode_workers=decode_workers)
    if not isinstance(task, Captioner):
        raise ConfigError(f"{model_dir} holds a {task.spec.task} model, not a captioning model")
    return task


def _caption_annotations(
    captioner: Captioner,
    images: Iterable[ImageInput],
    *,
    batch_size: int,
    generation: Mapping[str, Any],
) -> Iterator[dict[str, Any]]:
    """One document annotation per image, in order, streamed."""

    def run(sources: Iterator[Any]) -> Iterator[Caption]:
        return captioner.caption_sources(sources, batch_size=batch_size, **generation)

    for image, error, caption in _with_inputs(images, run):
        if error is not None:
            caption = dataclasses.replace(caption, error=error, captions=(), tokens=())
        yield document_annotation(image, caption)


def caption_images(
    captioner: Captioner, images: Sequence[ImageInput], job: CaptionJob
) -> list[dict[str, Any]]:
    """Caption image annotations' contents; one document annotation (a dict) per image, in order."""
    return list(
        _caption_annotations(captioner, images, batch_size=job.batch_size, generation=dict(job.generation))
    )


def caption_batches(job: CaptionJob, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The body of the captioning pandas UDF: image rows in, document annotation structs out (same
    count and order; the whole partition is one stream through the core, as in :func:`classify_batches`)."""
    first = next(batches, None)
    if first is None:
        return
    captioner = worker_captioner(
        _shipped_model_dir(job),
        job.preprocess,
        threads=_task_threads(job),
        decode_workers=job.decode_workers,
    )
    annotate = functools.partial(
        _caption_annotations, captioner, batch_size=job.batch_size, generation=dict(job.generation)
    )
    yield from _annotated_frames(itertools.chain([first], batches), annotate, _DOCUMENT_COLUMNS)


def make_caption_udf(job: CaptionJob):
    """An iterator pandas UDF: struct<origin, height, width, nChannels, mode, data, encoded> → document."""
    from pyspark.sql.functions import pandas_udf

    def caption_images_udf(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return caption_batches(job, batches)

    return pandas_udf(caption_images_udf, returnType=DOCUMENT_ANNOTATION_FROM_PYTHON)  # type: ignore[call-overload]
