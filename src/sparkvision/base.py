"""Spark NLP's ``sparknlp.base`` for images: ``from sparkvision.base import *``.

Gives :class:`ImageAssembler` (images → image annotations), :class:`LightPipeline` (a fitted pipeline
run in-process), the annotation classes, and :func:`prediction_columns` (annotations → plain
columns). Needs ``pip install 'sparkvision[spark]'``.
"""

from __future__ import annotations

from .spark.annotations import Annotation, AnnotationImage
from .spark.assembler import ImageAssembler
from .spark.functions import prediction_columns, read_image_stream, read_images
from .spark.light import LightPipeline

__all__ = [
    "Annotation",
    "AnnotationImage",
    "ImageAssembler",
    "LightPipeline",
    "prediction_columns",
    "read_image_stream",
    "read_images",
]
