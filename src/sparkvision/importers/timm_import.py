"""Import a timm model: an architecture name plus a local weights file (or a timm Hub directory).

``sparkvision import timm:resnet50.a1_in1k --weights resnet50.safetensors`` builds ``resnet50`` with
timm, loads the weights (safetensors, or ``.pth``/``.bin`` with ``weights_only=True``), takes the
preprocessing from the pretrained config of that tag (``resolve_data_config``: input size,
interpolation, crop_pct, crop mode, mean, std) and exports ``logits`` + ``embeddings``
(``forward_head(pre_logits=True)``). A directory saved by ``timm``'s Hub tools (``config.json`` with
``architecture`` and ``pretrained_cfg`` beside ``model.safetensors``) works too, with no name needed.

Labels: a labels file you give, else the config's ``label_names``, else the ImageNet-1k classes for a
1000-way head (timm's ImageNet subsets for 11821 and 21843), else ``LABEL_i`` with a warning.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelImportError
from ..labels import imagenet1k_labels, imagenet1k_synsets
from ..models.spec import MODEL_FILE, ModelSpec
from ..preprocess import PreprocessSpec
from .common import (
    check_label_count,
    export_onnx,
    fallback_labels,
    imagenet_synsets_for,
    load_state_dict,
    random_batch,
    require,
    sha256_files,
)

__all__ = ["TIMM_PREFIX", "import_timm", "timm_preprocess_spec"]

TIMM_PREFIX = "timm:"
_INTERPOLATIONS = {"bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"}


def timm_preprocess_spec(data_config: Mapping[str, Any]) -> PreprocessSpec:
    """Map timm's resolved eval data config onto a :class:`PreprocessSpec` (torchvision crop rounding)."""
    _, height, width = data_config["input_size"]
    if height != width:
        raise ModelImportError(f"non-square timm input size {height}×{width} is not supported")
    interpolation = str(data_config.get("interpolation", "bilinear"))
    if interpolation not in _INTERPOLATIONS:
        raise ModelImportError(f"timm interpolation {interpolation!r} is not supported")
    crop_pct = float(data_config.get("crop_pct") or 0.875)
    mode = data_config.get("crop_mode") or "center"
    resize = {"center": "crop", "squash": "squash_crop"}.get(mode)
    if resize is None:
        raise ModelImportError(f"timm crop_mode {mode!r} is not supported (supported: center, squash)")
    return PreprocessSpec(
        size=int(height),
        resize=resize,  # type: ignore[arg-type]
        crop_pct=crop_pct,
        interpolation=interpolation,  # type: ignore[arg-type]
        mean=tuple(float(m) for m in data_config["mean"]),  # type: ignore[arg-type]
        std=tuple(float(s) for s in data_config["std"]),  # type: ignore[arg-type]
        crop_rounding="round",
    )


def _hub_directory(directory: Path) -> tuple[Path, dict[str, Any]]:
    """(weights file, config) of a timm Hub directory."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelImportError(f"{directory} is not a timm model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"{config_file} cannot be read: {exc}") from exc
    for candidate in ("model.safetensors", "pytorch_model.bin"):
        if (directory / candidate).is_file():
            return directory / candidate, config
    raise ModelImportError(f"{directory} has no model.safetensors (or pytorch_model.bin)")


def _classifier_outputs(model: Any, state: Mapping[str, Any]) -> int | None:
    """Rows of the classifier weight in ``state`` (the class count the weights were trained for)."""
    keys = model.pretrained_cfg.get("classifier") or "fc"
    for key in (keys,) if isinstance(keys, str) else tuple(keys):
        weight = state.get(f"{key}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return None


def _imagenet_subset_labels(timm: Any, count: int) -> tuple[tuple[str, ...], tuple[str, ...] | None] | None:
    if count == 1000:
        return imagenet1k_labels(), imagenet1k_synsets()
    subset = {11821: "imagenet-12k", 21841: "imagenet-22k", 21843: "imagenet-21k"}.get(count)
    if subset is None:
        return None
    try:
        info = timm.data.ImageNetInfo(subset)
        synsets = tuple(info.label_names())
        return tuple(info.label_descriptions()), synsets
    except Exception:  # older timm without ImageNetInfo: fall back to LABEL_i
        return None


def import_timm(
    arch: str | None,
    weights: Path | None,
    directory: Path,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    activation: str | None = None,
    preprocess: PreprocessSpec | None = None,
    source: str | None = None,
    license: str | None = None,
) -> ModelSpec:
    """Build ``arch`` with timm, load ``weights`` and write the model into ``directory``."""
    timm = require("timm", "importing a timm model (timm needs torchvision as well)")
    if weights is None:
        raise ModelImportError(
            f"importing timm:{arch} needs its weights: sparkvision import timm:{arch} --weights FILE.safetensors"
        )
    weights = Path(weights)
    hub_config: dict[str, Any] = {}
    if weights.is_dir():
        weights, hub_config = _hub_directory(weights)
        arch = arch or hub_config.get("architecture")
    if not arch:
        raise ModelImportError("name the timm architecture: sparkvision import timm:ARCH --weights FILE")
    base = arch.split(".")[0]
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelImportError(f"timm has no architecture {base!r}.{hint} See timm.list_models().")

    state = load_state_dict(weights)
    overlay = hub_config.get("pretrained_cfg") or None
    try:
        probe = timm.create_model(arch, pretrained=False, pretrained_cfg_overlay=overlay)
    except Exception as exc:
        raise ModelImportError(f"timm cannot build {arch!r}: {exc}") from exc
    num_classes = _classifier_outputs(probe, state)
    if num_classes is None:
        raise ModelImportError(
            f"{weights} has no classifier weights for {arch} (a feature extractor?); sparkvision imports "
            f"classification models"
        )
    model = probe
    if num_classes != probe.num_classes:
        model = timm.create_model(
            arch, pretrained=False, num_classes=num_classes, pretrained_cfg_overlay=overlay
        )
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise ModelImportError(f"{weights} does not fit timm's {arch}: {detail}") from exc
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} missing ({', '.join(missing[:4])}{' …' if len(missing) > 4 else ''})"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}{' …' if len(unexpected) > 4 else ''})"
            )
        raise ModelImportError(f"{weights} does not fit timm's {arch}: weights {'; '.join(parts)}")
    model = model.eval().float()

    data_config = timm.data.resolve_data_config({}, model=model)
    pre = preprocess or timm_preprocess_spec(data_config)

    synsets: tuple[str, ...] | None = None
    if labels is not None:
        label_list = tuple(labels)
    elif hub_config.get("label_names"):
        label_list = tuple(hub_config.get("label_descriptions") or hub_config["label_names"])
    else:
        known = _imagenet_subset_labels(timm, num_classes)
        if known is not None:
            label_list, synsets = known
        else:
            label_list = fallback_labels(num_classes, f"timm:{arch}")
    check_label_count(label_list, num_classes, f"timm:{arch}")
    if synsets is None:
        synsets = imagenet_synsets_for(label_list)

    from .wrappers import TimmClassifier

    export_onnx(
        TimmClassifier(model),
        random_batch(pre.size, 2),
        directory / MODEL_FILE,
        output_names=("logits", "embeddings"),
        check_batch=random_batch(pre.size, 3, seed=1),
    )
    family = type(model).__module__.rsplit(".", 1)[-1]
    return ModelSpec(
        name=name,
        family=family,
        preprocess=pre,
        labels=label_list,
        synsets=synsets,
        activation=activation or "softmax",  # type: ignore[arg-type]
        outputs=("logits", "embeddings"),
        source=source or f"timm:{arch}",
        license=license if license is not None else str(model.pretrained_cfg.get("license") or ""),
        weights_sha256=sha256_files([weights]),
        extra={"architecture": arch, "importer": "timm", "timm_version": getattr(timm, "__version__", "")},
    )
