"""What a task hands back: :class:`Prediction` (one image's labels, or its error) and
:class:`PreparedImage` (an image decoded and preprocessed ahead of batching)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .preprocess import PreprocessSpec

__all__ = ["Prediction", "PreparedImage"]


@dataclass(frozen=True)
class Prediction:
    """The result for one input image.

    ``labels``/``scores``/``class_ids`` are the top-k, best first (empty when ``error`` is set).
    ``path`` is the file path for file inputs, else ``None``; ``index`` is the input's position.
    ``width``/``height`` are the image's true size (after EXIF rotation) when it could be read.
    """

    path: str | None
    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    class_ids: tuple[int, ...] = ()
    error: str | None = None
    index: int = 0
    width: int | None = None
    height: int | None = None
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        """The top-1 label, or ``None`` for an error row."""
        return self.labels[0] if self.labels else None

    @property
    def score(self) -> float | None:
        return self.scores[0] if self.scores else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record the CLI, the web service and the docs use."""
        record: dict[str, Any] = {
            "path": self.path,
            "labels": list(self.labels),
            "scores": [round(float(s), 6) for s in self.scores],
            "class_ids": list(self.class_ids),
            "error": self.error,
        }
        if self.embedding is not None:
            record["embedding"] = [float(v) for v in self.embedding]
        return record


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded and preprocessed for one model: the tensor it takes (3×S×S float32).

    Made by :meth:`Classifier.prepare`, so that a front can do the per-image work in its own threads
    as inputs arrive, and batching later only stacks tensors (the web service prepares each upload
    while other requests' batches run). ``preprocess`` is the spec it was made with: a classifier
    whose preprocessing differs refuses it (an error row), never classifies it silently.
    """

    pixels: np.ndarray
    width: int
    height: int
    preprocess: PreprocessSpec
