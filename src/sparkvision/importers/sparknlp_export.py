"""Import a folder exported for Spark NLP's ``loadSavedModel``: ``model.onnx`` + ``assets/``.

Spark NLP's notebooks for its image classifiers (``HuggingFace_ONNX_in_Spark_NLP_ViTForImageClassification``
and its Swin / ConvNeXt siblings) export a Hugging Face checkpoint with ``optimum-cli export onnx``,
then move the JSON files into ``assets/`` and write ``assets/labels.json``::

    EXPORT/model.onnx
    EXPORT/assets/preprocessor_config.json     the Hugging Face image processor's settings
    EXPORT/assets/labels.json                  {"tench, Tinca tinca": 0, ...}  (label → id)
    EXPORT/assets/config.json                  (often) the model config, moved there too

A user who exported models for Spark NLP loads that folder unchanged: the labels come from
``labels.json`` (label → id as the notebooks write it; an id → label mapping, a list, or
``labels.txt`` also work), the preprocessing from ``preprocessor_config.json`` through the same
mapping and numerical check as a Hugging Face checkpoint, and the graph is checked and renamed by the
plain ONNX importer. Needs transformers to read the processor settings (the ``import`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelImportError
from ..models.spec import ModelSpec
from .common import labels_from_mapping, read_labels_file, require

__all__ = ["import_sparknlp_export", "is_sparknlp_export"]

ASSETS = "assets"
#: Processor class → our family name, when ``assets/config.json`` does not say.
_FAMILIES = {"ViTImageProcessor": "vit", "ConvNextImageProcessor": "convnext", "DeiTImageProcessor": "deit"}


def is_sparknlp_export(path: Path) -> bool:
    """Whether ``path`` is laid out as Spark NLP's ONNX export: ``model.onnx`` plus ``assets/``."""
    return (path / "model.onnx").is_file() and (path / ASSETS).is_dir()


def _labels(assets: Path) -> tuple[str, ...]:
    labels_json, labels_txt = assets / "labels.json", assets / "labels.txt"
    if labels_json.is_file():
        try:
            data = json.loads(labels_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelImportError(f"{labels_json} cannot be read: {exc}") from exc
        if isinstance(data, Mapping) and data and all(isinstance(v, int) for v in data.values()):
            data = labels_from_mapping({v: k for k, v in data.items()}, str(labels_json))  # label → id
        elif isinstance(data, Mapping):
            data = labels_from_mapping(data, str(labels_json))  # id → label
        if (
            not isinstance(data, Sequence)
            or isinstance(data, str)
            or not all(isinstance(x, str) for x in data)
        ):
            raise ModelImportError(f"{labels_json} must map labels to ids, ids to labels, or list the labels")
        return tuple(data)
    if labels_txt.is_file():
        return read_labels_file(labels_txt)
    raise ModelImportError(f"{assets} holds no labels.json or labels.txt: the export is incomplete")


def _family(assets: Path, processor: Any) -> str:
    config = assets / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if isinstance(model_type, str) and model_type:
            return model_type
    kind = type(processor).__name__.removesuffix("Fast").removesuffix("Pil")
    return _FAMILIES.get(kind, "onnx")


def import_sparknlp_export(
    folder: Path, directory: Path, *, name: str, license: str | None = None
) -> ModelSpec:
    """Convert a Spark NLP ONNX export folder into a sparkvision model directory."""
    from .huggingface import _load_processor, check_preprocessing, hf_preprocess_spec
    from .onnx_file import import_onnx_file

    require("transformers", "reading a Spark NLP export's assets/preprocessor_config.json")
    folder = Path(folder)
    assets = folder / ASSETS
    labels = _labels(assets)
    processor = _load_processor(assets)
    if processor is None:
        raise ModelImportError(
            f"{assets} holds no preprocessor_config.json, so the preprocessing is unknown; copy it from the "
            "Hugging Face checkpoint the model was exported from"
        )
    if type(processor).__name__.startswith("CLIP"):
        raise ModelImportError(
            f"{folder} is a CLIP export; import CLIP from its Hugging Face checkpoint instead "
            "(sparkvision import ./clip-checkpoint), which keeps the text encoder zero-shot needs"
        )
    spec = hf_preprocess_spec(processor)
    check_preprocessing(processor, spec)
    return import_onnx_file(
        folder / "model.onnx",
        directory,
        name=name,
        labels=labels,
        preprocess=spec,
        family=_family(assets, processor),
        source=f"sparknlp-export:{folder.resolve()}",
        license=license,
    )
