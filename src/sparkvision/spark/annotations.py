"""The annotation schemas our stages read and write (Spark NLP's, so its tooling recognises them).

Image annotation (:class:`~sparkvision.spark.assembler.ImageAssembler` output)::

    array<struct<annotatorType: "image", origin, height, width, nChannels, mode,
                 result: binary, metadata: map<string,string>, text>>

``result`` holds either Spark's raw pixels (from ``spark.read.format("image")``: row-major BGR, BGRA or
gray, ``mode`` 16 / 24 / 0) or, for ``binaryFile`` input, the encoded file itself — then
``metadata["encoding"] == "file"`` and height/width/nChannels/mode are -1 until the file is decoded.

Category annotation (classifier output), one per image::

    array<struct<annotatorType: "category", begin: int, end: int, result: string,
                 metadata: map<string,string>, embeddings: array<float>>>

``result`` is the top label (empty for an image that could not be read); ``begin`` is 0 and ``end``
``len(result) - 1``, as Spark NLP sets them. ``metadata`` holds:

* ``image``: ``"0"``, the index of the image annotation classified (Spark NLP's key);

* ``confidence``: the top-1 score;
* the ranked top-k: ``label_1``/``score_1``/``class_id_1`` ... ``label_K``..., with ``top_k`` = K
  (reliable even when two classes share a name, like ImageNet's two "crane");
* each top-k ``label → score`` pair (Spark NLP style keys);
* ``origin``, ``height``, ``width``, ``nChannels``, ``mode`` of the image: ``height``/``width`` are the
  true size (after EXIF rotation for files); ``mode`` is Spark's OpenCV type code for image-source rows
  (``16`` BGR, ``24`` BGRA, ``0`` gray) and Pillow's mode name for encoded files (``RGB``, ``RGBA``,
  ``L``, ``P``, ``CMYK``...);
* ``error``: why the image could not be classified (then there are no scores).

Document annotation (captioning output), one per image, Spark NLP's ``Annotation`` schema with its
nullability (``begin``/``end`` never null, ``embeddings`` never holding a null)::

    array<struct<annotatorType: "document", begin: int, end: int, result: string,
                 metadata: map<string,string>, embeddings: array<float>>>

``result`` is the best caption (empty for an image that could not be read), ``begin`` 0 and ``end``
``len(result) - 1``; ``metadata`` holds ``image`` (``"0"``, the index of the image annotation read),
the image keys above (``origin``, ``height``...), every returned caption best first as
``caption_1`` ... ``caption_N`` with ``n_captions`` = N (``nReturnSequences``), or ``error``.

All values are strings, as Spark NLP's metadata maps are. :func:`sparkvision.spark.prediction_columns`
turns the column into plain typed columns.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import ConfigError
from ..results import Prediction

__all__ = [
    "CATEGORY",
    "CATEGORY_ANNOTATION",
    "CATEGORY_ANNOTATIONS",
    "CATEGORY_ANNOTATION_FROM_PYTHON",
    "DOCUMENT",
    "DOCUMENT_ANNOTATION",
    "DOCUMENT_ANNOTATIONS",
    "DOCUMENT_ANNOTATION_FROM_PYTHON",
    "ENCODED_FILE",
    "IMAGE",
    "IMAGE_ANNOTATION",
    "Annotation",
    "AnnotationImage",
    "ImageInput",
    "category_annotation",
    "category_annotations_column",
    "document_annotation",
    "document_annotations_column",
    "is_annotation_array",
    "is_image_struct",
]

IMAGE = "image"
CATEGORY = "category"
#: ``metadata["encoding"]`` of an image annotation whose ``result`` is an encoded file (binaryFile).
ENCODED_FILE = "file"

_STRING_MAP = T.MapType(T.StringType(), T.StringType())

IMAGE_ANNOTATION = T.StructType(
    [
        T.StructField("annotatorType", T.StringType()),
        T.StructField("origin", T.StringType()),
        T.StructField("height", T.IntegerType()),
        T.StructField("width", T.IntegerType()),
        T.StructField("nChannels", T.IntegerType()),
        T.StructField("mode", T.IntegerType()),
        T.StructField("result", T.BinaryType()),
        T.StructField("metadata", _STRING_MAP),
        T.StructField("text", T.StringType()),
    ]
)

#: Spark NLP's ``Annotation.dataType``, nullability included: ``begin``/``end`` are never null and
#: ``embeddings`` never holds a null.
CATEGORY_ANNOTATION = T.StructType(
    [
        T.StructField("annotatorType", T.StringType(), nullable=True),
        T.StructField("begin", T.IntegerType(), nullable=False),
        T.StructField("end", T.IntegerType(), nullable=False),
        T.StructField("result", T.StringType(), nullable=True),
        T.StructField("metadata", _STRING_MAP, nullable=True),
        T.StructField("embeddings", T.ArrayType(T.FloatType(), containsNull=False), nullable=True),
    ]
)

#: What the executors' pandas UDF declares: Arrow output from pandas is nullable, so ``begin``/``end``
#: are made non-null afterwards by :func:`category_annotations_column`.
CATEGORY_ANNOTATION_FROM_PYTHON = T.StructType(
    [T.StructField(f.name, f.dataType, nullable=True) for f in CATEGORY_ANNOTATION.fields]
)
#: Spark NLP's ``Annotation.arrayType``: the annotation column's type.
CATEGORY_ANNOTATIONS = T.ArrayType(CATEGORY_ANNOTATION, containsNull=True)


def category_annotations_column(raw: Any) -> Any:
    """The annotation column (``CATEGORY_ANNOTATIONS``) from the UDF's one-struct-per-row output."""
    from pyspark.sql import functions as F

    annotation = F.struct(
        raw["annotatorType"].alias("annotatorType"),
        F.coalesce(raw["begin"], F.lit(0)).alias("begin"),
        F.coalesce(raw["end"], F.lit(-1)).alias("end"),
        raw["result"].alias("result"),
        raw["metadata"].alias("metadata"),
        raw["embeddings"].alias("embeddings"),
    )
    return F.array(annotation).cast(CATEGORY_ANNOTATIONS)


# Spark's image data source: struct<origin, height, width, nChannels, mode, data>.
_IMAGE_STRUCT_FIELDS = {
    "origin": T.StringType,
    "height": T.IntegerType,
    "width": T.IntegerType,
    "nChannels": T.IntegerType,
    "mode": T.IntegerType,
    "data": T.BinaryType,
}


def is_image_struct(data_type: T.DataType) -> bool:
    """Whether a column type is Spark's image struct (``spark.read.format("image")``)."""
    if not isinstance(data_type, T.StructType):
        return False
    fields = {f.name: f.dataType for f in data_type.fields}
    return all(isinstance(fields.get(name), kind) for name, kind in _IMAGE_STRUCT_FIELDS.items())


def is_annotation_array(data_type: T.DataType, annotator_type: str) -> bool:
    """Whether a column type is an annotation array of the given kind (``"image"``/``"category"``)."""
    expected = IMAGE_ANNOTATION if annotator_type == IMAGE else CATEGORY_ANNOTATION
    if not isinstance(data_type, T.ArrayType) or not isinstance(data_type.elementType, T.StructType):
        return False
    # Compare type names only: nullability flags differ between equivalent columns.
    fields = {f.name: f.dataType.simpleString() for f in data_type.elementType.fields}
    return all(fields.get(f.name) == f.dataType.simpleString() for f in expected.fields)


@dataclass(frozen=True)
class AnnotationImage:
    """One image annotation, as :class:`~sparkvision.spark.LightPipeline` returns it."""

    annotatorType: str
    origin: str
    height: int
    width: int
    nChannels: int
    mode: int
    result: bytes = field(repr=False)
    metadata: Mapping[str, str]
    text: str = ""


@dataclass(frozen=True)
class Annotation:
    """One category annotation (classifier output), as in Spark NLP's ``Annotation``."""

    annotatorType: str
    begin: int
    end: int
    result: str
    metadata: Mapping[str, str]
    embeddings: Sequence[float] = ()


@dataclass(frozen=True)
class ImageInput:
    """What a classifier needs from one image annotation (one row on the executors).

    ``encoded``: ``data`` is an encoded file (binaryFile) rather than Spark's raw pixels. ``error``:
    the image is already known to be unusable (a file that could not be read), with this reason.
    """

    origin: str | None
    height: int | None
    width: int | None
    n_channels: int | None
    mode: int | None
    data: bytes | None
    encoded: bool
    error: str | None = None


def encoded_image_info(data: bytes | None) -> tuple[str, str] | None:
    """``(nChannels, mode)`` of an encoded file from its header only, or ``None`` if unreadable.

    Only for metadata: the decoding itself (and its errors) is the core's job.
    """
    if not data:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return str(len(image.getbands())), image.mode
    except Exception:  # any header the core will reject anyway
        return None


def _image_metadata(image: ImageInput, prediction: Prediction) -> dict[str, str]:
    meta = {"origin": image.origin or ""}
    if image.encoded:
        if prediction.height is not None and prediction.width is not None:
            meta["height"], meta["width"] = str(prediction.height), str(prediction.width)
        info = encoded_image_info(image.data) if prediction.ok else None
        if info is not None:
            meta["nChannels"], meta["mode"] = info
    else:
        for key, value in (
            ("height", image.height),
            ("width", image.width),
            ("nChannels", image.n_channels),
            ("mode", image.mode),
        ):
            if value is not None:
                meta[key] = str(value)
    return meta


def _score_text(score: float) -> str:
    return repr(float(score))


def category_annotation(image: ImageInput, prediction: Prediction) -> dict[str, Any]:
    """The category annotation (as a plain dict, the shape Arrow wants) for one prediction."""
    metadata: dict[str, str] = {"image": "0"}
    if prediction.ok:
        for label, score in zip(prediction.labels, prediction.scores):
            metadata.setdefault(label, _score_text(score))
        for rank, (label, score, class_id) in enumerate(
            zip(prediction.labels, prediction.scores, prediction.class_ids), start=1
        ):
            metadata[f"label_{rank}"] = label
            metadata[f"score_{rank}"] = _score_text(score)
            metadata[f"class_id_{rank}"] = str(class_id)
        metadata["top_k"] = str(len(prediction.labels))
        if prediction.scores:
            metadata["confidence"] = _score_text(prediction.scores[0])
    else:
        metadata["error"] = prediction.error or "unknown error"
    metadata.update(_image_metadata(image, prediction))
    embedding = prediction.embedding
    result = prediction.label or ""
    return {
        "annotatorType": CATEGORY,
        "begin": 0,
        "end": len(result) - 1,
        "result": result,
        "metadata": metadata,
        "embeddings": [] if embedding is None else [float(v) for v in embedding],
    }


# -- document annotations (captioning) ----------------------------------------------------------------
DOCUMENT = "document"

#: Spark NLP's ``Annotation.dataType`` is one schema for every annotation type but images: a document
#: annotation has the category annotation's struct (nullability included).
DOCUMENT_ANNOTATION = CATEGORY_ANNOTATION
DOCUMENT_ANNOTATION_FROM_PYTHON = CATEGORY_ANNOTATION_FROM_PYTHON
DOCUMENT_ANNOTATIONS = CATEGORY_ANNOTATIONS


def document_annotations_column(raw: Any) -> Any:
    """The annotation column (:data:`DOCUMENT_ANNOTATIONS`) from a UDF's one-struct-per-row output."""
    return category_annotations_column(raw)


def document_annotation(image: ImageInput, caption: Any) -> dict[str, Any]:
    """The document annotation (a plain dict, the shape Arrow wants) for one
    :class:`~sparkvision.tasks.captioning.Caption` of ``image``."""
    metadata: dict[str, str] = {"image": "0"}
    if caption.ok:
        for rank, text in enumerate(caption.captions, start=1):
            metadata[f"caption_{rank}"] = text
        metadata["n_captions"] = str(len(caption.captions))
    else:
        metadata["error"] = caption.error or "unknown error"
    metadata.update(_image_metadata(image, caption))
    result = caption.caption or ""
    return {
        "annotatorType": DOCUMENT,
        "begin": 0,
        "end": len(result) - 1,
        "result": result,
        "metadata": metadata,
        "embeddings": [],
    }


def single_input_col(stage: str, input_cols: Sequence[str]) -> str:
    """The one image annotation column a stage reads (``inputCols`` must name exactly one)."""
    if len(input_cols) != 1:
        raise ConfigError(
            f"{stage} reads exactly one image annotation column, got inputCols={list(input_cols)}"
        )
    return input_cols[0]


def image_stage_columns(
    stage: str, input_cols: Sequence[str], output_col: str, dataset: DataFrame
) -> tuple[str, str]:
    """The input and output columns of a stage that reads one image annotation column, checked
    against ``dataset``: the input must exist and hold image annotations, the output must not exist."""
    input_col = single_input_col(stage, input_cols)
    fields = {f.name: f for f in dataset.schema.fields}
    if input_col not in fields:
        raise ConfigError(
            f"{stage}: input column {input_col!r} not found (columns: {', '.join(fields)}); "
            "create it with ImageAssembler().setOutputCol(...) and setInputCols([...]) to it"
        )
    if not is_annotation_array(fields[input_col].dataType, IMAGE):
        raise ConfigError(
            f"{stage}: column {input_col!r} is {fields[input_col].dataType.simpleString()}, "
            "not an image annotation column; put an ImageAssembler before this stage and read its output"
        )
    if output_col in fields:
        raise ConfigError(
            f"{stage}: output column {output_col!r} already exists; choose another with "
            "setOutputCol() or drop that column first"
        )
    return input_col, output_col


def image_input_struct(input_col: str) -> Column:
    """The first image annotation of ``input_col`` as the struct the executors' UDFs read (origin,
    size, channels, mode, the pixels or encoded file in ``data``, and whether ``data`` is a file)."""
    image = F.col(input_col)[0]
    return F.struct(
        image["origin"].alias("origin"),
        image["height"].alias("height"),
        image["width"].alias("width"),
        image["nChannels"].alias("nChannels"),
        image["mode"].alias("mode"),
        image["result"].alias("data"),
        F.coalesce(image["metadata"]["encoding"] == F.lit(ENCODED_FILE), F.lit(False)).alias("encoded"),
    )
