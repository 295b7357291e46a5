"""Comparing a model's outputs with a reference model's, for the int8 tests: softmax probabilities
of a model file on a batch, and the mean KL divergence between two sets of them (the continuous
measure the int8 work chooses by; top-1 agreement flips on near-ties)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparkvision.engine import get_engine


def probabilities(model_file: Path, batch: np.ndarray) -> np.ndarray:
    """Softmax of the model's ``logits`` output on ``batch``, in float64."""
    logits = get_engine(model_file).run(batch, ["logits"])[0].astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def mean_kl(reference: np.ndarray, other: np.ndarray) -> float:
    """Mean over the batch of KL(reference ‖ other)."""
    return float(np.mean(np.sum(reference * (np.log(reference) - np.log(other)), axis=1)))
