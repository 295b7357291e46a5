"""Spark NLP's ``sparknlp.base`` for images: ``from sparkvision.base import *``.

Gives what Spark NLP's does for image pipelines: :class:`ImageAssembler` (images → image annotations),
:class:`LightPipeline` (a fitted pipeline run in-process), ``Pipeline`` and ``PipelineModel`` (pyspark's,
as ``sparknlp.base`` re-exports them), the annotation classes; and ours: :func:`prediction_columns`
(annotations → plain columns) and the image readers. Needs ``pip install 'sparkvision[spark]'``.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel

from .spark.annotations import Annotation, AnnotationImage
from .spark.assembler import ImageAssembler
from .spark.functions import prediction_columns, read_image_stream, read_images
from .spark.light import LightPipeline

__all__ = [
    "Annotation",
    "AnnotationImage",
    "ImageAssembler",
    "LightPipeline",
    "Pipeline",
    "PipelineModel",
    "prediction_columns",
    "read_image_stream",
    "read_images",
]
