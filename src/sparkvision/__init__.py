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

from ._version import __version__
from .errors import (
    ConfigError,
    CorruptImageError,
    ImageDecodeError,
    ImageTooLargeError,
    ImageUnavailableError,
    InputNotFoundError,
    ModelFormatError,
    ModelImportError,
    ModelNotFoundError,
    SparkvisionError,
    TruncatedImageError,
    UnsupportedImageError,
)
from .importers import hub as _hub  # noqa: F401  (registers the Hugging Face Hub builders)
from .models import DEFAULT_MODEL, ModelSpec, list_models
from .preprocess import PreprocessSpec
from .results import Prediction, PreparedImage
from .tasks import ImageTask, load
from .tasks.classification import Classifier
from .tasks.zero_shot import ZeroShotClassifier

__all__ = [
    "DEFAULT_MODEL",
    "Classifier",
    "ConfigError",
    "CorruptImageError",
    "ImageDecodeError",
    "ImageTask",
    "ImageTooLargeError",
    "ImageUnavailableError",
    "InputNotFoundError",
    "ModelFormatError",
    "ModelImportError",
    "ModelNotFoundError",
    "ModelSpec",
    "Prediction",
    "PreparedImage",
    "PreprocessSpec",
    "SparkvisionError",
    "TruncatedImageError",
    "UnsupportedImageError",
    "ZeroShotClassifier",
    "__version__",
    "list_models",
    "load",
    "start",
    "version",
]


def start(*args, **kwargs):  # pragma: no cover - thin re-export, documented in sparkvision.spark
    """Start a SparkSession configured for sparkvision (needs ``pip install 'sparkvision[spark]'``).

    Takes :func:`sparkvision.spark.session.start`'s arguments, which include ``sparknlp.start()``'s.
    """
    from .spark.session import start as _start

    return _start(*args, **kwargs)


def version() -> str:
    """The installed sparkvision version (as ``sparknlp.version()`` gives Spark NLP's)."""
    return __version__
