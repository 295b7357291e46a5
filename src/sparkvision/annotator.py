"""Spark NLP's ``sparknlp.annotator`` for image classification: ``from sparkvision.annotator import *``.

The classifier stages share one implementation (:class:`ImageClassifierModel`); the Spark NLP-named
subclasses set their family's default params and default ``pretrained()`` name.
:class:`CLIPForZeroShotClassification` is that stage for zero-shot (CLIP) models, with
``candidateLabels``. :class:`ImageClassifierApproach` (an Estimator) trains a classifier stage on
labelled images, such as those :func:`read_labelled_images` reads from class folders.
:class:`VisionEncoderDecoderForImageCaptioning` captions images (``document`` annotations). Needs
``pip install 'sparkvision[spark]'``.
"""

from __future__ import annotations

from .spark.approach import ImageClassifierApproach, read_labelled_images
from .spark.captioning import VisionEncoderDecoderForImageCaptioning
from .spark.classifier import (
    ConvNextForImageClassification,
    EfficientNetForImageClassification,
    ImageClassifierModel,
    SwinForImageClassification,
    ViTForImageClassification,
)
from .spark.clip import CLIPForZeroShotClassification

__all__ = [
    "CLIPForZeroShotClassification",
    "ConvNextForImageClassification",
    "EfficientNetForImageClassification",
    "ImageClassifierApproach",
    "ImageClassifierModel",
    "SwinForImageClassification",
    "ViTForImageClassification",
    "VisionEncoderDecoderForImageCaptioning",
    "read_labelled_images",
]
