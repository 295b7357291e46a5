"""What a model is: :class:`ModelSpec`, the contents of ``sparkvision.json``.

A model directory holds ``model.onnx`` and ``sparkvision.json``; the spec carries everything needed
to use the network correctly — preprocessing, labels, output activation, provenance — so no front has
to guess (the idea of timm's pretrained config, made typed, frozen and versioned).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, ModelFormatError
from ..preprocess import PreprocessSpec

__all__ = ["MODEL_FILE", "MODEL_FORMAT_VERSION", "SPEC_FILE", "TASKS", "ModelSpec"]

MODEL_FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
SPEC_FILE = "sparkvision.json"

Task = Literal["classification", "zero-shot", "captioning"]
#: Every task a model directory can declare.
TASKS: tuple[str, ...] = ("classification", "zero-shot", "captioning")
Activation = Literal["softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a model except its weights.

    Attributes:
        name: catalogue / cache name, e.g. ``"efficientnet_lite0"``.
        family: architecture family (``"efficientnet_lite"``, ``"vit"``, ``"clip"``...).
        task: ``"classification"`` (fixed labels), ``"zero-shot"`` (labels given at run time) or
            ``"captioning"`` (an image-to-text encoder-decoder; no labels, its settings in ``extra``).
        preprocess: the preprocessing the network was trained with.
        labels: class names in output order (empty for zero-shot models).
        synsets: WordNet ids in output order for ImageNet-style models, else ``None``.
        activation: turns logits into scores: ``"softmax"`` (single label), ``"sigmoid"`` (multi-label).
        outputs: names of the ONNX outputs (``"logits"``, optionally ``"embeddings"``...).
        source / license / weights_sha256: provenance of the weights the model was built from.
        extra: family-specific settings (e.g. CLIP's prompt template), JSON-serialisable.
        format_version: version of this file format.
    """

    name: str
    family: str
    preprocess: PreprocessSpec
    labels: tuple[str, ...] = ()
    task: Task = "classification"
    synsets: tuple[str, ...] | None = None
    activation: Activation = "softmax"
    outputs: tuple[str, ...] = ("logits",)
    source: str = ""
    license: str = ""
    weights_sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = MODEL_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a model needs a name")
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}")
        if self.activation not in ("softmax", "sigmoid", "none"):
            raise ConfigError(f"unknown activation {self.activation!r}")
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.synsets is not None:
            object.__setattr__(self, "synsets", tuple(self.synsets))
            if len(self.synsets) != len(self.labels):
                raise ConfigError(f"{len(self.synsets)} synsets for {len(self.labels)} labels")
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if self.task == "classification" and not self.labels:
            raise ConfigError(f"classification model {self.name!r} has no labels")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def has_embeddings(self) -> bool:
        return "embeddings" in self.outputs

    def with_changes(self, **changes: Any) -> ModelSpec:
        """A copy with some fields replaced (specs are immutable)."""
        return replace(self, **changes)

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "family": self.family,
            "task": self.task,
            "activation": self.activation,
            "outputs": list(self.outputs),
            "preprocess": self.preprocess.to_dict(),
            "labels": list(self.labels),
            "synsets": list(self.synsets) if self.synsets is not None else None,
            "source": self.source,
            "license": self.license,
            "weights_sha256": self.weights_sha256,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        version = data.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise ModelFormatError(
                f"model format version {version!r} is not supported (this sparkvision reads "
                f"version {MODEL_FORMAT_VERSION}); re-import or rebuild the model"
            )
        try:
            synsets: Sequence[str] | None = data.get("synsets")
            return cls(
                name=data["name"],
                family=data["family"],
                task=data.get("task", "classification"),
                activation=data.get("activation", "softmax"),
                outputs=tuple(data.get("outputs", ("logits",))),
                preprocess=PreprocessSpec.from_dict(dict(data["preprocess"])),
                labels=tuple(data.get("labels", ())),
                synsets=tuple(synsets) if synsets is not None else None,
                source=data.get("source", ""),
                license=data.get("license", ""),
                weights_sha256=data.get("weights_sha256"),
                extra=dict(data.get("extra") or {}),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelFormatError(f"invalid model description: {detail}") from exc

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SPEC_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelSpec:
        path = Path(directory) / SPEC_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelFormatError(f"{path} is missing: {directory} is not a sparkvision model") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{path} cannot be read: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelFormatError(f"{path} does not hold a JSON object")
        try:
            return cls.from_dict(data)
        except ModelFormatError as exc:
            raise ModelFormatError(f"{path}: {exc}") from exc
