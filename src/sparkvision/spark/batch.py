"""The CLI's ``classify --spark`` / ``--spark-master URL`` job: the same files, the same predictions, through Spark.

The paths are expanded on the driver exactly as the embedded path expands them (same files, same
order), read with ``binaryFile``, classified by the same stages a user would build, and collected back
in input order as :class:`~sparkvision.Prediction` objects, so the CLI writes its usual outputs.
Executors must see the same paths (one machine, or a shared filesystem).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..models.catalogue import resolve_model
from ..results import Prediction
from ..sources import iter_sources
from ..tasks.classification import Classifier
from .assembler import ImageAssembler
from .classifier import ImageClassifierModel

__all__ = ["classify_paths_with_spark"]

_GLOB_CHARS = re.compile(r"([\\\[\]{}*?])")


def _glob_escaped(path: str) -> str:
    """Spark treats load() paths as glob patterns: escape file names that contain glob characters."""
    return _GLOB_CHARS.sub(r"\\\1", path)


def _key(path: str) -> str:
    """A comparable absolute path for a local path or the ``file:`` URI Spark reports for it."""
    if path.startswith("file:"):
        path = path[len("file:") :]
        if path.startswith("//"):
            path = path[2:]
    return os.path.normpath(os.path.abspath(path))


def classify_paths_with_spark(
    paths: list[str],
    *,
    model: str,
    master: str,
    top_k: int,
    batch_size: int | None,
    recursive: bool,
    threshold: float | None,
) -> Iterator[Prediction]:
    """Classify image files (and folders of them) with a Spark job; yields predictions in input order.

    ``Prediction.path`` is the file's path as the embedded path reports it (the name given, or the
    folder joined with the file name). A session already running in this process is used (and left
    running); otherwise one is started on ``master`` and stopped at the end.
    """
    from pyspark.sql import SparkSession

    from .functions import prediction_columns
    from .session import start

    files = [path for _source, path in iter_sources(list(paths), recursive=recursive)]
    model_dir, spec = resolve_model(model)

    existing = SparkSession.getActiveSession()
    spark = existing or start(master)
    try:
        # A file that does not exist would fail the whole Spark read: the core gives it its error row.
        unique = list(
            dict.fromkeys(_key(str(Path(p))) for p in files if p is not None and os.path.lexists(p))
        )
        frame = spark.read.format("binaryFile").load([_glob_escaped(p) for p in unique]) if unique else None
        results: dict[str, Prediction] = {}
        if frame is not None:
            stage = ImageClassifierModel._from_model(model_dir, spec)
            stage.setInputCols(["image"]).setOutputCol("class").setTopK(top_k)
            if batch_size is not None:
                stage.setBatchSize(batch_size)
            assembled = ImageAssembler().setInputCol("content").setOutputCol("image").transform(frame)
            plain = prediction_columns(stage.transform(assembled), "class")
            rows = plain.select(
                "path",
                "labels",
                "scores",
                "class_ids",
                "error",
                plain["class"][0]["metadata"]["width"].cast("int").alias("width"),
                plain["class"][0]["metadata"]["height"].cast("int").alias("height"),
            ).collect()
            for row in rows:
                results[_key(row["path"])] = Prediction(
                    path=None,
                    labels=tuple(row["labels"]),
                    scores=tuple(row["scores"]),
                    class_ids=tuple(row["class_ids"]),
                    error=row["error"],
                    width=row["width"],
                    height=row["height"],
                )
    finally:
        if existing is None:
            spark.stop()

    # Spark's file sources skip some files (empty ones): the embedded core reports on those itself.
    unread = [p for p in dict.fromkeys(files) if p is not None and _key(p) not in results]
    if unread:
        core = Classifier(model_dir, spec)
        for prediction in core.classify(unread, top_k=top_k, batch_size=batch_size):
            results[_key(prediction.path)] = prediction

    for index, path in enumerate(files):
        found = results[_key(path)]
        labels, scores, ids = found.labels, found.scores, found.class_ids
        if threshold is not None:
            keep = [i for i, score in enumerate(scores) if score >= threshold]
            labels, scores, ids = (tuple(seq[i] for i in keep) for seq in (labels, scores, ids))
        yield Prediction(
            path=path,
            labels=labels,
            scores=scores,
            class_ids=ids,
            error=found.error,
            index=index,
            width=found.width,
            height=found.height,
        )
