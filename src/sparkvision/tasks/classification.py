"""Image classification over a model's fixed labels: decode → preprocess → ONNX Runtime → top-k.

:class:`Classifier` is what every front uses (CLI, Python API, Spark workers, the web service)::

    from sparkvision import Classifier

    clf = Classifier.pretrained()                    # efficientnet_lite0, converted on first use
    for p in clf.classify("photos/", top_k=3):
        print(p.path, p.labels, p.scores, p.error)

Inputs are streamed (see :mod:`sparkvision.scheduling`), so memory stays flat however large the
folder. Every input yields exactly one :class:`~sparkvision.Prediction`, in input order; an image
that cannot be read gets ``error`` set and no labels, and never stops the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import ConfigError, SparkvisionError
from ..scoring import activate
from .labelling import Head, LabelTask
from .registry import register_task

__all__ = ["Classifier"]


@register_task("classification")
class Classifier(LabelTask):
    """Classifies images with one model's fixed labels (softmax or sigmoid scores).

    ``Classifier.pretrained(name)`` also loads zero-shot (CLIP) models, whose ``classify`` takes the
    labels at run time (``candidate_labels=[...]``). Constructor arguments: see
    :class:`~sparkvision.tasks.base.ImageTask`.
    """

    pretrained_accepts: ClassVar[type[LabelTask]] = LabelTask

    def _head(self, candidate_labels: Sequence[str] | str | None) -> Head:
        spec = self.spec
        if spec.task != self.task:
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model: load it with Classifier.pretrained(...) or "
                f"sparkvision.load(...), which pick the class for its task"
            )
        if candidate_labels is not None:
            raise ConfigError(
                f"model {spec.name!r} is not a zero-shot model (its labels are fixed); candidate labels apply "
                f"only to zero-shot models such as clip_vit_base_patch32"
            )

        def score(batch: np.ndarray, lane: bool, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
            raw = self._run(batch, ["logits", "embeddings"] if embeddings else ["logits"], lane=lane)
            if raw[0].shape != (len(batch), spec.num_classes):
                raise SparkvisionError(
                    f"model {spec.name!r} returned logits of shape {raw[0].shape}, expected "
                    f"({len(batch)}, {spec.num_classes}); the model directory does not match its labels"
                )
            return activate(raw[0], spec.activation), raw[1] if embeddings else None

        return Head(spec.labels, score)
