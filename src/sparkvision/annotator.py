"""Spark NLP's ``sparknlp.annotator`` for image classification: ``from sparkvision.annotator import *``.

The classifier stages share one implementation (:class:`ImageClassifierModel`); the Spark NLP-named
subclasses set their family's default params and default ``pretrained()`` name. Needs
``pip install 'sparkvision[spark]'``.
"""

from __future__ import annotations

from .spark.classifier import (
    ConvNextForImageClassification,
    EfficientNetForImageClassification,
    ImageClassifierModel,
    SwinForImageClassification,
    ViTForImageClassification,
)

__all__ = [
    "ConvNextForImageClassification",
    "EfficientNetForImageClassification",
    "ImageClassifierModel",
    "SwinForImageClassification",
    "ViTForImageClassification",
]
