"""Measure a model on a labelled folder: accuracy, per-class precision/recall/F1, confusions, speed.

The data is folder-per-class (see :mod:`.dataset`). Each folder name is matched to one of the model's
classes, in this order, stopping at the first rule that gives an answer:

1. a WordNet synset id (``n02123045``), for models that carry synsets (the ImageNet models);
2. the exact label (``"tabby, tabby cat"``, or a trained model's own labels);
3. the label, ignoring case, ``_`` vs space and repeated spaces (``Tabby,_tabby_cat``);
4. the label's first name (``espresso`` for ``"espresso"``, ``tabby`` for ``"tabby, tabby cat"``);
5. any of the label's names (``hippo`` for ``"hippopotamus, hippo, river horse, ..."``).

A rule that matches two classes is ambiguous (ImageNet has two "crane" and two "maillot" classes) and
the folder is left unmapped with a message saying which synset ids to use. Unmapped folders are listed
in the result and their images are not scored; if no folder maps, :func:`evaluate` raises.

Every image of a mapped folder gets one prediction. Unreadable images are counted and listed, never
fatal, and are left out of the accuracy (which is over the images the model could see).
"""

from __future__ import annotations

import difflib
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models.catalogue import DEFAULT_MODEL
from ..models.spec import ModelSpec
from ..results import Prediction
from ..tasks.classification import Classifier
from .dataset import LabelledImages, labelled_images

__all__ = ["ClassMatch", "ClassMetrics", "Evaluation", "evaluate", "map_classes"]

_SYNSET = re.compile(r"^n\d{8}$")
OTHER = "(other)"


@dataclass(frozen=True)
class ClassMatch:
    """How one data-set class (folder) was matched to a model class."""

    folder: str
    class_id: int | None
    label: str | None = None
    rule: str | None = None
    problem: str | None = None

    @property
    def mapped(self) -> bool:
        return self.class_id is not None


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold().replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


def _names(label: str) -> list[str]:
    return [_norm(part) for part in label.split(",") if part.strip()]


def _describe(spec: ModelSpec, ids: Sequence[int]) -> str:
    parts = []
    for i in ids:
        synset = f"{spec.synsets[i]} " if spec.synsets else ""
        parts.append(f"{synset}{spec.labels[i]!r}")
    return "; ".join(parts)


def map_classes(folders: Sequence[str], spec: ModelSpec) -> list[ClassMatch]:
    """Match data-set class names to ``spec``'s classes (rules in the module docstring)."""
    labels = spec.labels
    synsets = {s: i for i, s in enumerate(spec.synsets)} if spec.synsets else {}
    normalised = [_norm(label) for label in labels]
    names = [_names(label) for label in labels]
    rules: list[tuple[str, Any]] = [
        (
            "synset",
            lambda f: [synsets[f.lower()]] if _SYNSET.match(f.lower()) and f.lower() in synsets else [],
        ),
        ("label", lambda f: [i for i, label in enumerate(labels) if label == f]),
        ("label (normalised)", lambda f: [i for i, n in enumerate(normalised) if n == _norm(f)]),
        ("first name", lambda f: [i for i, n in enumerate(names) if n and n[0] == _norm(f)]),
        ("any name", lambda f: [i for i, n in enumerate(names) if _norm(f) in n]),
    ]
    matches: list[ClassMatch] = []
    for folder in folders:
        match: ClassMatch | None = None
        for rule, find in rules:
            ids = find(folder)
            if len(ids) == 1:
                match = ClassMatch(folder, ids[0], labels[ids[0]], rule)
                break
            if len(ids) > 1:
                hint = "; name the folder by synset id instead" if spec.synsets else ""
                match = ClassMatch(
                    folder,
                    None,
                    problem=f"ambiguous: matches {len(ids)} classes ({_describe(spec, ids)}){hint}",
                )
                break
        if match is None:
            first_names = sorted({n[0] for n in names if n})
            close = difflib.get_close_matches(_norm(folder), first_names, n=3, cutoff=0.6)
            hint = f"; close: {', '.join(map(repr, close))}" if close else ""
            match = ClassMatch(
                folder, None, problem=f"no class of {spec.name!r} has this synset id, label or name{hint}"
            )
        matches.append(match)
    by_id: dict[int, str] = {}
    for m in matches:
        if m.class_id is None:
            continue
        if m.class_id in by_id:
            raise ConfigError(
                f"folders {by_id[m.class_id]!r} and {m.folder!r} both map to class {m.class_id} "
                f"({m.label!r}) of {spec.name!r}; merge them"
            )
        by_id[m.class_id] = m.folder
    return matches


@dataclass(frozen=True)
class ClassMetrics:
    """Scores for one data-set class. ``precision`` counts predictions among the evaluated images only."""

    folder: str
    label: str
    class_id: int
    support: int
    predicted: int
    correct: int
    precision: float
    recall: float
    f1: float
    top5_recall: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "label": self.label,
            "class_id": self.class_id,
            "support": self.support,
            "predicted": self.predicted,
            "correct": self.correct,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "top5_recall": self.top5_recall,
        }


@dataclass
class Evaluation:
    """The result of :func:`evaluate` (write it out with :func:`~sparkvision.training.report.write_report`).

    ``top5_accuracy`` is ``None`` for models with five classes or fewer (it would always be 1).
    ``confusion`` has one row per mapped class (``classes``) and one column per mapped class plus a
    last column for predictions of any other model class (``(other)``).
    """

    model: str
    model_dir: str
    data: str | None
    classes: list[ClassMetrics]
    matches: list[ClassMatch]
    images: int
    evaluated: int
    top1_accuracy: float
    top5_accuracy: float | None
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: np.ndarray
    most_confused: list[tuple[str, str, int]]
    seconds: float
    failed: list[tuple[str, str]] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    skipped_files: int = 0
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def unmapped(self) -> list[ClassMatch]:
        return [m for m in self.matches if not m.mapped]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def confusion_columns(self) -> list[str]:
        return [c.folder for c in self.classes] + [OTHER]

    def to_dict(self, *, with_records: bool = False) -> dict[str, Any]:
        """JSON-ready metrics (``sparkvision evaluate --format json``)."""
        result: dict[str, Any] = {
            "model": self.model,
            "model_dir": self.model_dir,
            "data": self.data,
            "images": self.images,
            "evaluated": self.evaluated,
            "failed": len(self.failed),
            "top1_accuracy": self.top1_accuracy,
            "top5_accuracy": self.top5_accuracy,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "classes": [c.to_dict() for c in self.classes],
            "unmapped_classes": [{"folder": m.folder, "problem": m.problem} for m in self.unmapped],
            "class_mapping": [
                {"folder": m.folder, "class_id": m.class_id, "label": m.label, "rule": m.rule}
                for m in self.matches
                if m.mapped
            ],
            "empty_classes": self.empty_classes,
            "skipped_non_image_files": self.skipped_files,
            "most_confused": [{"true": t, "predicted": p, "count": n} for t, p, n in self.most_confused],
            "confusion": {
                "rows": [c.folder for c in self.classes],
                "columns": self.confusion_columns,
                "counts": self.confusion.tolist(),
            },
            "failed_images": [{"path": p, "error": e} for p, e in self.failed],
        }
        if with_records:
            result["predictions"] = self.records
        return result


def evaluate(
    data: Any,
    model: str | Classifier = DEFAULT_MODEL,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    progress: bool | Any = False,
    max_confusions: int = 10,
) -> Evaluation:
    """Score ``model`` on labelled images (a folder-per-class path, or any form
    :func:`~sparkvision.training.dataset.labelled_images` takes).

    The steps: load the classification model, read the data, match its folders to the model's classes,
    classify the images of the matched folders, tally each prediction against its folder, and turn the
    tallies into per-class and overall scores.

    ``progress``: ``True`` for a tqdm bar on stderr, or an object with ``update(n)``.
    """
    classifier = _classification_model(model, threads)
    spec = classifier.spec
    dataset = _evaluation_data(data)
    matches = map_classes(dataset.classes, spec)
    mapped = _mapped_or_raise(matches, spec)
    scored = _images_of_mapped_folders(dataset, mapped)
    predictions, seconds = _classify_timed(
        classifier, scored, top_k=min(5, spec.num_classes), batch_size=batch_size, progress=progress
    )
    tally = _Tally(mapped)
    for prediction, path, target in zip(predictions, scored.paths, scored.targets):
        tally.add(prediction, str(path), scored.classes[target])
    return _evaluation(
        classifier,
        dataset,
        matches,
        tally,
        images=len(scored),
        seconds=seconds,
        max_confusions=max_confusions,
    )


def _classification_model(model: str | Classifier, threads: int | None) -> Classifier:
    """The model to score, loaded by name unless given; only classification models can be evaluated."""
    classifier = model if isinstance(model, Classifier) else Classifier.pretrained(model, threads=threads)
    spec = classifier.spec
    if spec.task != "classification":
        raise ConfigError(
            f"model {spec.name!r} is a {spec.task} model; evaluate needs a classification model"
        )
    return classifier


def _evaluation_data(data: Any) -> LabelledImages:
    """The labelled images; at least one class with images, or a message saying why there is none."""
    dataset = labelled_images(data)
    if not dataset.classes:
        raise ConfigError(
            f"no images to evaluate in {dataset.root or 'the data'}"
            + (f" (empty class folders: {', '.join(dataset.empty_classes)})" if dataset.empty_classes else "")
        )
    return dataset


def _mapped_or_raise(matches: Sequence[ClassMatch], spec: ModelSpec) -> list[ClassMatch]:
    """The folders that match a model class; raises when none does (nothing could be scored)."""
    mapped = [m for m in matches if m.mapped]
    if not mapped:
        details = "; ".join(f"{m.folder!r}: {m.problem}" for m in matches)
        raise ConfigError(
            f"none of the class folders matches a class of {spec.name!r} ({details}). Name folders by "
            "synset id (n02123045), exact label or a label's first name"
        )
    return mapped


def _images_of_mapped_folders(dataset: LabelledImages, mapped: Sequence[ClassMatch]) -> LabelledImages:
    """The images of the matched folders only (an unmatched folder's images are not scored)."""
    folders = {m.folder for m in mapped}
    return dataset.subset([i for i, t in enumerate(dataset.targets) if dataset.classes[t] in folders])


def _classify_timed(
    classifier: Classifier,
    images: LabelledImages,
    *,
    top_k: int,
    batch_size: int | None,
    progress: bool | Any,
) -> tuple[list[Prediction], float]:
    """Every image's top-``top_k`` prediction (error rows for unreadable ones) and the seconds it took,
    decoding included; ``progress=True`` shows a tqdm bar on stderr for the duration."""
    bar = progress
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(
            total=len(images),
            unit="img",
            desc=f"evaluating {classifier.spec.name}",
            file=sys.stderr,
            leave=False,
        )
    elif progress is False:
        bar = None
    started = time.perf_counter()
    try:
        predictions = list(
            classifier.classify(list(images.paths), top_k=top_k, batch_size=batch_size, progress=bar)
        )
    finally:
        if progress is True and bar is not None:
            bar.close()
    return predictions, time.perf_counter() - started


class _Tally:
    """Counts predictions against their true folder: the confusion matrix (one row per mapped folder,
    one column per mapped folder plus ``(other)``), top-5 hits, confused pairs, unreadable images, and
    one record per image for ``predictions.csv``."""

    def __init__(self, mapped: Sequence[ClassMatch]) -> None:
        self.mapped = list(mapped)
        self.row_of = {m.folder: i for i, m in enumerate(self.mapped)}
        self.column_of = {m.class_id: i for i, m in enumerate(self.mapped)}
        n_rows = len(self.mapped)
        self.confusion = np.zeros((n_rows, n_rows + 1), dtype=np.int64)
        self.top5_hits = np.zeros(n_rows, dtype=np.int64)
        self.failed: list[tuple[str, str]] = []
        self.records: list[dict[str, Any]] = []
        self.confusions: Counter[tuple[str, str]] = Counter()

    def add(self, prediction: Prediction, path: str, folder: str) -> None:
        """Count one image of ``folder``: an error row, or its top-1 cell, top-5 hit and confusion."""
        row = self.row_of[folder]
        true_id = self.mapped[row].class_id
        record: dict[str, Any] = {"path": path, "true": folder, "true_label": self.mapped[row].label}
        if prediction.error is not None:
            self.failed.append((path, prediction.error))
            self.records.append(
                {
                    **record,
                    "predicted": None,
                    "score": None,
                    "correct": None,
                    "top5": None,
                    "error": prediction.error,
                }
            )
            return
        predicted_id = prediction.class_ids[0]
        self.confusion[row, self.column_of.get(predicted_id, len(self.mapped))] += 1
        in_top = true_id in prediction.class_ids
        self.top5_hits[row] += in_top
        if predicted_id != true_id:
            self.confusions[(folder, prediction.labels[0])] += 1
        self.records.append(
            {
                **record,
                "predicted": prediction.labels[0],
                "score": prediction.scores[0],
                "correct": predicted_id == true_id,
                "top5": in_top,
                "error": None,
            }
        )

    def class_metrics(self, num_classes: int) -> list[ClassMetrics]:
        """Precision, recall, F1 and top-5 recall per mapped folder (top-5 only for models with more
        than five classes)."""
        n_rows = len(self.mapped)
        support = self.confusion.sum(axis=1)
        correct = np.diag(self.confusion[:, :n_rows])
        predicted_as = self.confusion[:, :n_rows].sum(axis=0)
        metrics: list[ClassMetrics] = []
        for i, m in enumerate(self.mapped):
            precision = float(correct[i] / predicted_as[i]) if predicted_as[i] else 0.0
            recall = float(correct[i] / support[i]) if support[i] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            metrics.append(
                ClassMetrics(
                    folder=m.folder,
                    label=m.label or m.folder,
                    class_id=int(m.class_id or 0),
                    support=int(support[i]),
                    predicted=int(predicted_as[i]),
                    correct=int(correct[i]),
                    precision=precision,
                    recall=recall,
                    f1=f1,
                    top5_recall=float(self.top5_hits[i] / support[i])
                    if support[i] and num_classes > 5
                    else None,
                )
            )
        return metrics


def _evaluation(
    classifier: Classifier,
    dataset: LabelledImages,
    matches: list[ClassMatch],
    tally: _Tally,
    *,
    images: int,
    seconds: float,
    max_confusions: int,
) -> Evaluation:
    """The overall scores (micro top-1/top-5 over the scored images, macro over classes with images)
    and everything :func:`evaluate` found, as one :class:`Evaluation`."""
    spec = classifier.spec
    metrics = tally.class_metrics(spec.num_classes)
    evaluated = sum(c.support for c in metrics)
    correct = sum(c.correct for c in metrics)
    scored = [c for c in metrics if c.support]
    return Evaluation(
        model=spec.name,
        model_dir=str(classifier.model_dir),
        data=str(dataset.root) if dataset.root is not None else None,
        classes=metrics,
        matches=matches,
        images=images,
        evaluated=evaluated,
        top1_accuracy=float(correct / evaluated) if evaluated else 0.0,
        top5_accuracy=float(tally.top5_hits.sum() / evaluated)
        if evaluated and spec.num_classes > 5
        else None,
        macro_precision=float(np.mean([c.precision for c in scored])) if scored else 0.0,
        macro_recall=float(np.mean([c.recall for c in scored])) if scored else 0.0,
        macro_f1=float(np.mean([c.f1 for c in scored])) if scored else 0.0,
        confusion=tally.confusion,
        most_confused=[(t, p, n) for (t, p), n in tally.confusions.most_common(max_confusions)],
        seconds=seconds,
        failed=tally.failed,
        empty_classes=list(dataset.empty_classes),
        skipped_files=len(dataset.skipped),
        records=tally.records,
    )
