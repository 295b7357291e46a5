"""From a model's raw outputs to ranked labels: activation, top-k and threshold.

These are the last numeric steps of every labelling task (fixed-label classification and zero-shot
alike); they take arrays and return arrays, and know nothing of images, models or fronts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["activate", "rank", "softmax", "top_k"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float32, computed in place on a shifted copy)."""
    shifted = np.asarray(logits, dtype=np.float32) - np.max(logits, axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Scores from logits: ``"softmax"`` (one label per image), ``"sigmoid"`` (multi-label) or
    anything else for the logits as they are (float32 copies in every case)."""
    if activation == "softmax":
        return softmax(logits)
    values = np.array(logits, dtype=np.float32, copy=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-values))
    return values


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` best scores per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    ids = np.take_along_axis(part, order, axis=1)
    return ids, np.take_along_axis(values, order, axis=1)


def rank(scores: np.ndarray, k: int, threshold: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row, the ``(class ids, scores)`` of the top ``k``, best first, keeping only scores of at
    least ``threshold`` when one is given."""
    ids, values = top_k(scores, k)
    if threshold is None:
        return list(zip(ids, values))
    kept = values >= threshold
    return [(row_ids[keep], row_values[keep]) for row_ids, row_values, keep in zip(ids, values, kept)]
