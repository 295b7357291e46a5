"""Transfer learning on the CPU: a new classifier from labelled folders, in seconds to minutes.

:func:`train` runs the base model once over the images to get their embeddings (cached on disk, so a
second run with other settings is fast), fits a linear head on them, and exports base + head as one
ONNX model in the sparkvision model format. The result is found by name like any other model::

    from sparkvision.training import train
    result = train("data/train", name="my_flowers", base="efficientnet_lite0")
    print(result.val_accuracy)

    from sparkvision import Classifier
    Classifier.pretrained("my_flowers").classify("photos/")

Nothing is written into the model cache until the model is complete (built in a temporary directory,
then renamed), and an existing model is never replaced without ``force=True``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ConfigError
from ..extras import require
from ..models.catalogue import DEFAULT_MODEL, canonical_name, get_entry
from ..models.spec import MODEL_FILE, ModelSpec
from ..models.store import build_model_dir, cached_model_dir, is_model_dir, validate_model_name
from ..tasks.classification import Classifier
from .dataset import LabelledImages, labelled_images
from .embeddings import EmbeddingCache, Embeddings, embed_files, model_fingerprint
from .export import fuse_head
from .head import DEFAULT_HEAD, HEAD_KINDS, HeadFit, HeadKind, fit_head

__all__ = [
    "TrainResult",
    "check_target",
    "export_trained_model",
    "split_train_val",
    "stratified_split",
    "train",
]

log = logging.getLogger(__name__)

TRAINED_FAMILY_SUFFIX = "+linear"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` built and how well it did.

    Attributes:
        name / model_dir / spec: the new model (load it with ``Classifier.pretrained(name)``).
        classes: its labels, in output order.
        train_counts / val_counts: images per class used for fitting / validation.
        val_accuracy: top-1 accuracy on the validation images (``None`` without validation).
        per_class_val_accuracy: recall per class on the validation images.
        fit: the head trainer's report (kind, settings, epochs, history).
        embedded / from_cache / embed_seconds: images embedded by the base model, how many of them
            came from the embedding cache, and the time that took.
        failed: ``(path, error)`` for images that could not be read (left out of training).
        seconds: total wall time.
    """

    name: str
    model_dir: Path
    spec: ModelSpec
    classes: tuple[str, ...]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    val_accuracy: float | None
    per_class_val_accuracy: dict[str, float]
    fit: HeadFit
    embedded: int
    from_cache: int
    embed_seconds: float
    train_seconds: float
    export_seconds: float
    seconds: float
    validation: str
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def train_accuracy(self) -> float:
        return self.fit.train_accuracy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` output)."""
        return {
            "name": self.name,
            "model_dir": str(self.model_dir),
            "base": self.spec.extra.get("base_model"),
            "classes": list(self.classes),
            "train_counts": self.train_counts,
            "val_counts": self.val_counts,
            "validation": self.validation,
            "val_accuracy": self.val_accuracy,
            "per_class_val_accuracy": self.per_class_val_accuracy,
            "train_accuracy": self.train_accuracy,
            "head": self.fit.summary(),
            "embedded": self.embedded,
            "from_cache": self.from_cache,
            "embed_seconds": round(self.embed_seconds, 3),
            "train_seconds": round(self.train_seconds, 3),
            "export_seconds": round(self.export_seconds, 3),
            "seconds": round(self.seconds, 3),
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


def stratified_split(
    targets: Sequence[int], classes: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)`` of a stratified random split: about ``fraction`` of each class goes
    to validation, and every class keeps at least one image on each side (so each needs two)."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"the validation split must be at least 0 and below 1, got {fraction}")
    if fraction == 0:
        return list(range(len(targets))), []
    rng = np.random.default_rng(seed)
    array = np.asarray(targets)
    sizes = np.bincount(array, minlength=len(classes)) if len(array) else np.zeros(len(classes), int)
    too_small = [f"{label!r} ({int(sizes[c])})" for c, label in enumerate(classes) if sizes[c] < 2]
    if too_small:
        raise ConfigError(
            f"classes {', '.join(too_small)} have fewer than 2 images, too few to split into training "
            "and validation; add images, give a separate validation folder (--val), or use --val-split 0"
        )
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in range(len(classes)):
        members = np.flatnonzero(array == c)
        members = members[rng.permutation(len(members))]
        n_val = min(len(members) - 1, max(1, round(len(members) * fraction)))
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    return sorted(train_idx), sorted(val_idx)


def split_train_val(
    data: LabelledImages, fraction: float, seed: int
) -> tuple[LabelledImages, LabelledImages | None]:
    """:func:`stratified_split` applied to a data set; no validation part when ``fraction`` is 0."""
    train_idx, val_idx = stratified_split(data.targets, data.classes, fraction, seed)
    if not val_idx:
        return data, None
    return data.subset(train_idx), data.subset(val_idx)


def check_target(name: str, output_dir: str | os.PathLike[str] | None, force: bool) -> Path:
    """Where the model ``name`` will be written; refuses built-in names and (without ``force``)
    existing models, before any work is done."""
    validate_model_name(name)
    if output_dir is None:
        entry = get_entry(name)
        if entry is not None or canonical_name(name) != name:
            raise ConfigError(
                f"{name!r} is the name of a built-in model; choose another name for your trained model"
            )
        target = cached_model_dir(name)
    else:
        target = Path(output_dir)
    if target.exists() and not is_model_dir(target):
        # --force replaces a model, never an arbitrary folder (think `-o . --force`).
        raise ConfigError(
            f"{target} exists and is not a sparkvision model directory; choose another "
            + ("output folder" if output_dir is not None else "name")
        )
    if target.exists() and not force:
        raise ConfigError(
            f"a model named {name!r} already exists ({target}); choose another name or pass --force "
            "(force=True) to replace it"
        )
    return target


def _check_val_classes(
    train_classes: Sequence[str], val_classes: Sequence[str], empty: Sequence[str]
) -> None:
    only_train = sorted(set(train_classes) - set(val_classes))
    only_val = sorted(set(val_classes) - set(train_classes))
    if not only_train and not only_val:
        return
    parts = []
    if only_val:
        parts.append(
            f"only in the validation data: {', '.join(map(repr, only_val))} (the model could never predict them)"
        )
    if only_train:
        missing = [c for c in only_train if c not in empty]
        hollow = [c for c in only_train if c in empty]
        if missing:
            parts.append(f"missing from the validation data: {', '.join(map(repr, missing))}")
        if hollow:
            parts.append(f"empty in the validation data: {', '.join(map(repr, hollow))}")
    raise ConfigError(
        "the validation classes differ from the training classes — "
        + "; ".join(parts)
        + ". Give the validation folder the same class subfolders as the training folder."
    )


def _check_training_data(data: LabelledImages, what: str) -> None:
    if data.empty_classes:
        raise ConfigError(
            f"{what}: class folder(s) {', '.join(map(repr, data.empty_classes))} hold no image files"
            + (f" ({len(data.skipped)} non-image file(s) skipped)" if data.skipped else "")
            + "; add images or remove the folder(s)"
        )
    if len(data.classes) < 2:
        found = f"only one class, {data.classes[0]!r}" if data.classes else "no classes"
        raise ConfigError(
            f"{what}: found {found}; a classifier needs at least two classes "
            "(one subfolder of images per class)"
        )


def _progress_bar(enabled: bool, total: int | None, desc: str, unit: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_trained_spec(
    *,
    name: str,
    base: ModelSpec,
    base_fingerprint: str,
    classes: Sequence[str],
    weights_sha256: str,
    training: Mapping[str, Any],
) -> ModelSpec:
    """The spec of a fused base + head model: new labels, the base's preprocessing, provenance."""
    family = (
        base.family if base.family.endswith(TRAINED_FAMILY_SUFFIX) else base.family + TRAINED_FAMILY_SUFFIX
    )
    return ModelSpec(
        name=name,
        family=family,
        preprocess=base.preprocess,
        labels=tuple(classes),
        task="classification",
        synsets=None,
        activation="softmax",
        outputs=("logits", "embeddings"),
        source=f"sparkvision train (linear head on {base.name})",
        license=f"base weights: {base.license or 'unknown'}; head: trained on your data",
        weights_sha256=weights_sha256,
        extra={
            "base_model": base.name,
            "base_family": base.family,
            "base_source": base.source,
            "base_license": base.license,
            "base_weights_sha256": base.weights_sha256,
            "base_fingerprint": base_fingerprint,
            "training": dict(training),
        },
    )


def export_trained_model(
    target: Path,
    *,
    name: str,
    base: Classifier,
    fit: HeadFit,
    classes: Sequence[str],
    training: Mapping[str, Any],
    force: bool = False,
) -> ModelSpec:
    """Write base + head into ``target`` atomically (see :func:`~sparkvision.models.store.build_model_dir`)."""
    base_fingerprint = model_fingerprint(base)

    def build(directory: Path) -> ModelSpec:
        model_file = fuse_head(base.model_dir / MODEL_FILE, fit.head, directory / MODEL_FILE)
        return build_trained_spec(
            name=name,
            base=base.spec,
            base_fingerprint=base_fingerprint,
            classes=classes,
            weights_sha256=_sha256(model_file),
            training=training,
        )

    built = build_model_dir(target, build, replace=force)
    if built.extra.get("training") != dict(training):
        raise ConfigError(f"a model named {name!r} appeared at {target} while training; nothing was replaced")
    return built


def train(
    data: Any,
    *,
    name: str,
    base: str = DEFAULT_MODEL,
    val: Any = None,
    val_split: float = 0.2,
    epochs: int | None = None,
    seed: int = 0,
    head: HeadKind = DEFAULT_HEAD,
    force: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    cache: bool | EmbeddingCache = True,
    progress: bool = False,
) -> TrainResult:
    """Train a classifier on labelled images and save it as the model ``name``.

    Args:
        data: a folder with one subfolder per class, ``{label: [paths]}``, ``[(path, label), ...]``
            or a :class:`~sparkvision.training.dataset.LabelledImages`.
        name: the new model's name (letters, digits, ``.``, ``_``, ``-``).
        base: the model whose ``embeddings`` feed the head (its preprocessing is kept).
        val: validation data in the same forms as ``data``, with the same classes. Without it a
            stratified ``val_split`` fraction of ``data`` is held out (``0``: no validation).
        epochs: iteration cap (see :func:`~sparkvision.training.head.fit_head`); ``None``: default.
        seed: makes the split and the training reproducible.
        head: ``"logistic"`` (scikit-learn, default) or ``"softmax"`` (numpy, early stopping).
        force: replace an existing model of that name.
        output_dir: write the model directory here instead of the model cache.
        batch_size / threads: for the base model's inference.
        cache: reuse/store embeddings on disk (``True``: the default cache; or an :class:`EmbeddingCache`).
        progress: tqdm progress bars on stderr.

    Raises:
        ConfigError: bad arguments or data (one class, empty class folder, classes that differ
            between training and validation, a name already taken...). Nothing is written then.
    """
    started = time.perf_counter()
    if head not in HEAD_KINDS:
        raise ConfigError(f"unknown head {head!r}; use one of {', '.join(HEAD_KINDS)}")
    _require_training_extra(head)
    target = check_target(name, output_dir, force)
    split = _training_and_validation_sets(data, val, val_split, seed)
    classifier = _embedding_model(base, threads)
    embedded = _embed_images(classifier, split.all_paths, cache, batch_size, progress)
    failed = embedded.failed(split.all_paths)
    for path, message in failed:
        log.warning("skipping %s: %s", path, message)
    examples = _readable_examples(split, embedded, failed)

    fit_started = time.perf_counter()
    fit = _fit_head_with_progress(examples, len(split.train.classes), head, epochs, seed, progress)
    train_seconds = time.perf_counter() - fit_started

    train_counts = _counts(split.train.classes, examples.y_train)
    val_counts = _counts(split.train.classes, examples.y_val) if examples.y_val is not None else {}
    training = _training_record(split, fit, train_counts, val_counts, unreadable=len(failed), seed=seed)
    export_started = time.perf_counter()
    spec = export_trained_model(
        target,
        name=name,
        base=classifier,
        fit=fit,
        classes=split.train.classes,
        training=training,
        force=force,
    )
    export_seconds = time.perf_counter() - export_started
    return TrainResult(
        name=name,
        model_dir=target,
        spec=spec,
        classes=split.train.classes,
        train_counts=train_counts,
        val_counts=val_counts,
        val_accuracy=fit.val_accuracy,
        per_class_val_accuracy=_per_class_val_accuracy(fit, examples, split.train.classes),
        fit=fit,
        embedded=len(split.all_paths) - len(failed),
        from_cache=embedded.from_cache,
        embed_seconds=embedded.seconds,
        train_seconds=train_seconds,
        export_seconds=export_seconds,
        seconds=time.perf_counter() - started,
        validation=split.validation,
        failed=failed,
    )


def _require_training_extra(head: HeadKind) -> None:
    """Fail before the work when the 'train' extra is missing: onnx writes the trained model, and the
    logistic head is scikit-learn's."""
    require("onnx", extra="train", purpose="saving a trained model")
    if head == "logistic":
        require("sklearn", extra="train", purpose="the 'logistic' head (or use head='softmax')")


@dataclass(frozen=True)
class _Split:
    """The images to fit on and to validate on, and how the validation part was chosen."""

    data: LabelledImages  # the training data as given (before any split)
    train: LabelledImages
    val: LabelledImages | None
    validation: str  # "folder", "split 0.2" or "none"

    @property
    def all_paths(self) -> list[Path]:
        """Training images first, then validation images (the embedding order)."""
        return list(self.train.paths) + (list(self.val.paths) if self.val is not None else [])


def _training_and_validation_sets(data: Any, val: Any, val_split: float, seed: int) -> _Split:
    """Read and check the training data, then take the validation data from ``val`` (same classes,
    indexed like the training classes) or hold out a stratified ``val_split`` of the training data."""
    dataset = labelled_images(data)
    _check_training_data(dataset, "training data")
    if val is None:
        train_set, val_set = split_train_val(dataset, val_split, seed)
        return _Split(dataset, train_set, val_set, f"split {val_split:g}" if val_set is not None else "none")
    val_data = labelled_images(val)
    _check_val_classes(dataset.classes, val_data.classes, val_data.empty_classes)
    # Same labels, maybe from another source order: index them like the training classes.
    remap = {label: dataset.classes.index(label) for label in val_data.classes}
    val_set = LabelledImages(
        classes=dataset.classes,
        paths=val_data.paths,
        targets=tuple(remap[val_data.classes[t]] for t in val_data.targets),
        root=val_data.root,
    )
    return _Split(dataset, dataset, val_set, "folder")


def _embedding_model(base: str, threads: int | None) -> Classifier:
    """The base model, which must export ``embeddings`` (the head's input)."""
    classifier = Classifier.pretrained(base, threads=threads)
    if not classifier.spec.has_embeddings:
        raise ConfigError(
            f"base model {classifier.spec.name!r} does not export embeddings; use efficientnet_lite0/1/2 "
            "or another model with an 'embeddings' output"
        )
    return classifier


def _embed_images(
    classifier: Classifier,
    paths: Sequence[Path],
    cache: bool | EmbeddingCache,
    batch_size: int | None,
    progress: bool,
) -> Embeddings:
    """Every image's embedding (from the cache where it has them); a cache opened here is closed here."""
    embedding_cache = cache if isinstance(cache, EmbeddingCache) else (EmbeddingCache() if cache else None)
    bar = _progress_bar(progress, len(paths), f"embedding ({classifier.spec.name})", "img")
    try:
        return embed_files(classifier, paths, cache=embedding_cache, batch_size=batch_size, progress=bar)
    finally:
        if bar is not None:
            bar.close()
        if embedding_cache is not None and not isinstance(cache, EmbeddingCache):
            embedding_cache.close()


@dataclass(frozen=True)
class _Examples:
    """The readable images' embeddings and class indices, for fitting and for validation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None


def _readable_examples(split: _Split, embedded: Embeddings, failed: Sequence[tuple[str, str]]) -> _Examples:
    """Drop the unreadable images; every class must keep at least one training image."""
    n_train = len(split.train)
    x_train, y_train = _usable(embedded.vectors[:n_train], embedded.ok[:n_train], split.train.targets)
    present = set(y_train.tolist())
    unreadable = [label for c, label in enumerate(split.train.classes) if c not in present]
    if unreadable:
        raise ConfigError(
            f"no readable training images left for class(es) {', '.join(map(repr, unreadable))} "
            f"({len(failed)} image(s) could not be read, e.g. {failed[0][0]}: {failed[0][1]})"
            if failed
            else f"no training images for class(es) {', '.join(map(repr, unreadable))}"
        )
    if split.val is None:
        return _Examples(x_train, y_train, None, None)
    x_val, y_val = _usable(embedded.vectors[n_train:], embedded.ok[n_train:], split.val.targets)
    return _Examples(x_train, y_train, x_val, y_val)


def _fit_head_with_progress(
    examples: _Examples, num_classes: int, head: HeadKind, epochs: int | None, seed: int, progress: bool
) -> HeadFit:
    """:func:`~sparkvision.training.head.fit_head` on the examples, with a progress bar if asked."""
    bar = _progress_bar(progress, None, f"training ({head} head)", "epoch" if head == "softmax" else "fit")
    try:
        return fit_head(
            examples.x_train,
            examples.y_train,
            num_classes,
            examples.x_val,
            examples.y_val,
            kind=head,
            epochs=epochs,
            seed=seed,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()


def _per_class_val_accuracy(fit: HeadFit, examples: _Examples, classes: Sequence[str]) -> dict[str, float]:
    """Recall per class on the validation images (classes without validation images are left out)."""
    x_val, y_val = examples.x_val, examples.y_val
    if x_val is None or y_val is None or not len(y_val):
        return {}
    predicted = fit.head.predict(x_val)
    per_class: dict[str, float] = {}
    for c, label in enumerate(classes):
        members = y_val == c
        if members.any():
            per_class[label] = float((predicted[members] == c).mean())
    return per_class


def _training_record(
    split: _Split,
    fit: HeadFit,
    train_counts: dict[str, int],
    val_counts: dict[str, int],
    *,
    unreadable: int,
    seed: int,
) -> dict[str, Any]:
    """The provenance stored in the model's ``sparkvision.json`` (``extra.training``)."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sparkvision_version": __version__,
        "data": split.data.summary(),
        "validation": split.validation,
        "val_data": split.val.summary() if split.val is not None and split.validation == "folder" else None,
        "train_counts": train_counts,
        "val_counts": val_counts,
        "unreadable_images": unreadable,
        "seed": seed,
        "head": fit.summary(),
    }


def _usable(vectors: np.ndarray, ok: np.ndarray, targets: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(targets, dtype=np.int64)
    return vectors[ok], y[ok]


def _counts(classes: Sequence[str], y: np.ndarray) -> dict[str, int]:
    tally = np.bincount(y, minlength=len(classes)) if len(y) else np.zeros(len(classes), dtype=int)
    return {label: int(tally[i]) for i, label in enumerate(classes)}
