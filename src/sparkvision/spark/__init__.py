"""Spark NLP-compatible image classification on Apache Spark.

Spark NLP's documented image-classification example runs with only its imports changed::

    import sparkvision
    from sparkvision.base import *
    from sparkvision.annotator import *
    from pyspark.ml import Pipeline

    spark = sparkvision.start()
    imageAssembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
    imageClassifier = EfficientNetForImageClassification.pretrained() \\
        .setInputCols(["image_assembler"]).setOutputCol("class")
    pipeline = Pipeline().setStages([imageAssembler, imageClassifier])
    imageDF = spark.read.format("image").option("dropInvalid", value=True).load("photos/")
    result = pipeline.fit(imageDF).transform(imageDF)
    result.selectExpr("reverse(split(image.origin, '/'))[0] as image_name", "class.result").show()

Every image goes through the same embedded core (:class:`sparkvision.Classifier`) as the CLI and the
Python API, inside Spark's Python workers: Arrow batches, one ONNX Runtime session per worker process,
the model directory shipped to executors with ``SparkContext.addFile``.

Modules: :mod:`.session` (``start``), :mod:`.assembler` (``ImageAssembler``), :mod:`.classifier` (the
``*ForImageClassification`` stages), :mod:`.clip` (``CLIPForZeroShotClassification``),
:mod:`.captioning` (``VisionEncoderDecoderForImageCaptioning``), :mod:`.params` (the params mixins),
:mod:`.approach` (``ImageClassifierApproach``: trains a classifier stage), :mod:`.light`
(``LightPipeline``), :mod:`.functions` (plain columns from annotations, image readers), :mod:`.batch`
(the CLI's ``--spark`` job), :mod:`.inference` (what runs on the executors).
"""

from __future__ import annotations

from ..errors import MissingExtraError
from ..extras import install_hint

try:  # the stages exchange images with Spark's Python workers as Arrow batches of pandas frames
    import onnx  # noqa: F401  (reads a model's input size)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyspark  # noqa: F401
except ImportError as exc:
    raise MissingExtraError(
        f"sparkvision's Spark stages need the 'spark' extra ({exc.name} is not installed): "
        f"{install_hint('spark')} (and Java 17+)",
        extra="spark",
    ) from exc

from .annotations import Annotation, AnnotationImage
from .approach import ImageClassifierApproach, read_labelled_images
from .assembler import ImageAssembler
from .captioning import VisionEncoderDecoderForImageCaptioning
from .classifier import (
    ConvNextForImageClassification,
    EfficientNetForImageClassification,
    ImageClassifierModel,
    SwinForImageClassification,
    ViTForImageClassification,
)
from .clip import CLIPForZeroShotClassification
from .functions import prediction_columns, read_image_stream, read_images
from .light import LightPipeline
from .session import start

__all__ = [
    "Annotation",
    "AnnotationImage",
    "CLIPForZeroShotClassification",
    "ConvNextForImageClassification",
    "EfficientNetForImageClassification",
    "ImageAssembler",
    "ImageClassifierApproach",
    "ImageClassifierModel",
    "LightPipeline",
    "SwinForImageClassification",
    "ViTForImageClassification",
    "VisionEncoderDecoderForImageCaptioning",
    "prediction_columns",
    "read_image_stream",
    "read_images",
    "read_labelled_images",
    "start",
]
