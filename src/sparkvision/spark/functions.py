"""Helpers around the stages: plain prediction columns, and image readers with the right options.

``prediction_columns`` turns a category annotation column into typed columns (pure Spark SQL)::

    prediction_columns(result, "class").select("image.origin", "label", "score", "labels", "scores").show()

``read_images`` / ``read_image_stream`` read image files as ``binaryFile`` rows (the reader we
recommend: files are decoded by sparkvision, EXIF-aware, truncated files reported as errors), keeping
only files with an image extension — for a stream, with the fixed schema Structured Streaming needs.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import ConfigError
from ..images import IMAGE_EXTENSIONS
from .annotations import CATEGORY, is_annotation_array

__all__ = ["BINARY_FILE_SCHEMA", "image_glob", "prediction_columns", "read_image_stream", "read_images"]

#: The schema of Spark's ``binaryFile`` source (streams need it given explicitly).
BINARY_FILE_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType(), False),
        T.StructField("modificationTime", T.TimestampType(), False),
        T.StructField("length", T.LongType(), False),
        T.StructField("content", T.BinaryType(), True),
    ]
)

_PLAIN_COLUMNS = ("label", "score", "labels", "scores", "class_ids", "error")


def prediction_columns(
    dataset: DataFrame, column: str = "class", *, prefix: str = "", drop: bool = False
) -> DataFrame:
    """Add plain columns from a category annotation column (first annotation of each row).

    Adds ``label`` (string, null on error), ``score`` (double), ``labels`` (array<string>, best first),
    ``scores`` (array<double>), ``class_ids`` (array<int>) and ``error`` (string, null when fine), each
    name preceded by ``prefix``. ``drop`` removes the annotation column.
    """
    fields = {f.name: f for f in dataset.schema.fields}
    if column not in fields:
        raise ConfigError(f"column {column!r} not found (columns: {', '.join(fields)})")
    if not is_annotation_array(fields[column].dataType, CATEGORY):
        raise ConfigError(
            f"column {column!r} is {fields[column].dataType.simpleString()}, not a category annotation "
            "column (the output of an image classifier stage)"
        )
    clashes = [
        prefix + name for name in _PLAIN_COLUMNS if prefix + name in fields and prefix + name != column
    ]
    if clashes:
        raise ConfigError(f"columns {', '.join(clashes)} already exist; pass prefix= to name the new ones")

    meta = F.col(column)[0]["metadata"]
    count = F.coalesce(meta["top_k"].cast("int"), F.lit(0))
    ranks = F.when(count > 0, F.sequence(F.lit(1), count)).otherwise(F.array().cast("array<int>"))

    def ranked(key: str, cast: str) -> Column:
        return F.transform(ranks, lambda i: meta[F.concat(F.lit(key), i.cast("string"))].cast(cast))

    new = {
        "label": F.when(meta["error"].isNull(), meta["label_1"]),
        "score": meta["score_1"].cast("double"),
        "labels": ranked("label_", "string"),
        "scores": ranked("score_", "double"),
        "class_ids": ranked("class_id_", "int"),
        "error": meta["error"],
    }
    out = dataset.withColumns({prefix + name: value for name, value in new.items()})
    return out.drop(column) if drop else out


def image_glob() -> str:
    """A Hadoop glob matching every image extension sparkvision decodes, lower and upper case."""
    suffixes = sorted({ext.lstrip(".") for ext in IMAGE_EXTENSIONS})
    return "*.{" + ",".join(sorted({*suffixes, *(s.upper() for s in suffixes)})) + "}"


def _reader(reader: Any, glob: str | None, recursive: bool) -> Any:
    reader = reader.format("binaryFile").option("pathGlobFilter", glob or image_glob())
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    return reader


def read_images(
    spark: Any, path: str | list[str], *, glob: str | None = None, recursive: bool = False
) -> DataFrame:
    """Image files under ``path`` as ``binaryFile`` rows (``path``, ``modificationTime``, ``length``,
    ``content``); feed ``content`` to ``ImageAssembler().setInputCol("content")``."""
    paths = [path] if isinstance(path, str) else list(path)
    return _reader(spark.read, glob, recursive).load(paths)


def read_image_stream(
    spark: Any,
    path: str,
    *,
    glob: str | None = None,
    recursive: bool = False,
    max_files_per_trigger: int | None = None,
) -> DataFrame:
    """A Structured Streaming DataFrame of the image files arriving under ``path`` (binaryFile rows).

    Write files into the folder atomically (write elsewhere, then rename/move in), or a reader may see
    a half-written file.
    """
    reader = _reader(spark.readStream, glob, recursive).schema(BINARY_FILE_SCHEMA)
    if max_files_per_trigger is not None:
        reader = reader.option("maxFilesPerTrigger", int(max_files_per_trigger))
    return reader.load(path)
