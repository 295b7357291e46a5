"""The shared shape of tasks that answer with ranked labels (classification, zero-shot).

A labelling task says, per request, which labels it chooses from and how one batch of pixels turns
into scores over them (a :class:`Head`); everything else — the request policy
(:mod:`sparkvision.options`), streaming, ranking (:mod:`sparkvision.scoring`) and assembling
:class:`~sparkvision.results.Prediction` rows in input order — is here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..options import check_threshold, resolve_top_k
from ..results import Prediction
from ..scheduling import Chunk, stack_pixels
from ..scoring import rank
from ..sources import InMemorySources
from .base import ImageTask

__all__ = ["Head", "LabelTask"]

#: ``score(pixels, lane, with_embeddings)`` → ``(scores N×C, embeddings N×D or None)``.
ScoreFn = Callable[[np.ndarray, bool, bool], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass(frozen=True)
class Head:
    """What a labelling task scores a batch against: its labels and the function that scores."""

    labels: tuple[str, ...]
    score: ScoreFn


class LabelTask(ImageTask):
    """Base of the tasks whose results are labels with scores. Subclasses implement :meth:`_head`."""

    def _head(self, candidate_labels: Sequence[str] | str | None) -> Head:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    def classify(
        self,
        inputs: Any,
        *,
        top_k: int | None = None,
        batch_size: int | None = None,
        recursive: bool = False,
        threshold: float | None = None,
        embeddings: bool = False,
        progress: Any = None,
        candidate_labels: Sequence[str] | str | None = None,
    ) -> Iterator[Prediction]:
        """Classify images lazily, yielding one :class:`~sparkvision.Prediction` per input in input order.

        The request is checked at once (a bad ``top_k`` or missing candidate labels raise
        :class:`~sparkvision.errors.ConfigError` here); images are read as the result is iterated.

        ``inputs``: a file or folder path, bytes, a Pillow image, a numpy array (H×W×3 RGB), or an
        iterable of those (folders are expanded; ``recursive`` descends into subfolders).
        ``top_k``: labels per image (default 5, or fewer when the model has fewer labels).
        ``threshold`` keeps only labels scoring at least that much (useful for multi-label models).
        ``embeddings`` also returns the image embedding (for models that export one).
        ``progress``: an object with ``update(n)`` (e.g. a tqdm bar), called after each batch.
        ``candidate_labels``: the labels to choose from, for zero-shot models (CLIP).
        """
        head = self._head(candidate_labels)
        k = resolve_top_k(top_k, len(head.labels))
        threshold = check_threshold(threshold)
        if embeddings and not self.spec.has_embeddings:
            raise ConfigError(f"model {self.spec.name!r} does not export image embeddings")

        def infer(chunk: Chunk, lane: bool) -> list[Prediction]:
            return _predictions(
                chunk, head.labels, k, threshold, lambda batch: head.score(batch, lane, embeddings)
            )

        return self._stream(inputs, infer, batch_size=batch_size, recursive=recursive, progress=progress)

    def classify_batch(self, sources: Sequence[Any], **options: Any) -> list[Prediction]:
        """Classify a list of in-memory sources (``None`` entries become error rows); same order."""
        return list(self.classify_sources(sources, **options))

    def classify_sources(self, sources: Iterable[Any], **options: Any) -> Iterator[Prediction]:
        """Classify a stream of in-memory sources lazily (bytes, images, arrays, decoded or prepared
        images; ``None`` becomes an error row), one prediction per source, in order.

        Unlike :meth:`classify`, strings are never taken for paths, and the stream is read only a
        few batches ahead of inference — so a long stream (a Spark partition arriving in Arrow
        batches) flows through in full batches, never restarting at the stream's own chunk
        boundaries.
        """
        return self.classify(InMemorySources(sources), **options)

    def embed(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        recursive: bool = False,
        candidate_labels: Sequence[str] | str | None = None,
    ) -> Iterator[Prediction]:
        """Image embeddings (``Prediction.embedding``), with the top-1 label alongside."""
        return self.classify(
            inputs, top_k=1, batch_size=batch_size, recursive=recursive, embeddings=True,
            candidate_labels=candidate_labels,
        )  # fmt: skip


def _predictions(
    chunk: Chunk,
    labels: Sequence[str],
    k: int,
    threshold: float | None,
    score: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
) -> list[Prediction]:
    """One prediction per chunk entry: the ranked labels of the images that loaded, the error of
    the others, in chunk order."""
    good = [i for i, (_, _, loaded) in enumerate(chunk) if loaded.pixels is not None]
    ranked: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    if good:
        scores, features = score(stack_pixels([chunk[i][2].pixels for i in good]))
        for row, (i, (ids, values)) in enumerate(zip(good, rank(scores, k, threshold))):
            ranked[i] = (ids, values, None if features is None else features[row])
    results = []
    for i, (index, path, loaded) in enumerate(chunk):
        if i not in ranked:
            results.append(Prediction(path=path, error=loaded.error, index=index))
            continue
        ids, values, embedding = ranked[i]
        results.append(
            Prediction(
                path=path,
                labels=tuple(labels[c] for c in ids),
                scores=tuple(float(s) for s in values),
                class_ids=tuple(int(c) for c in ids),
                index=index,
                width=loaded.width,
                height=loaded.height,
                embedding=embedding,
            )
        )
    return results
