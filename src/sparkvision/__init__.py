"""sparkvision: classify images with pretrained models on the CPU, from a laptop to a Spark cluster.

The embedded core needs only ONNX Runtime::

    from sparkvision import Classifier

    clf = Classifier.pretrained()            # efficientnet_lite0
    for p in clf.classify("photos/", top_k=5):
        print(p.path, p.label, p.score)

The Spark stages live in :mod:`sparkvision.annotator` / :mod:`sparkvision.base` (``pip install
'sparkvision[spark]'``).
"""

from __future__ import annotations

from .classify import Classifier, Prediction, PreparedImage
from .errors import (
    ConfigError,
    ImageDecodeError,
    InputNotFoundError,
    ModelFormatError,
    ModelImportError,
    ModelNotFoundError,
    SparkvisionError,
)
from .models import DEFAULT_MODEL, ModelSpec, list_models
from .preprocess import PreprocessSpec

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Classifier",
    "ConfigError",
    "ImageDecodeError",
    "InputNotFoundError",
    "ModelFormatError",
    "ModelImportError",
    "ModelNotFoundError",
    "ModelSpec",
    "Prediction",
    "PreparedImage",
    "PreprocessSpec",
    "SparkvisionError",
    "__version__",
    "list_models",
]


def start(*args, **kwargs):  # pragma: no cover - thin re-export, documented in sparkvision.spark
    """Start a SparkSession configured for sparkvision (needs ``pip install 'sparkvision[spark]'``)."""
    from .spark.session import start as _start

    return _start(*args, **kwargs)
