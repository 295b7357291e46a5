"""Import a local Hugging Face checkpoint directory (as written by ``save_pretrained``).

Supported: the image-classification families in :data:`SUPPORTED_ARCHITECTURES` and CLIP
(``CLIPModel``, zero-shot). What comes from where:

* weights: ``model.safetensors`` (or its shards); ``pytorch_model.bin`` only through
  ``torch.load(weights_only=True)``. A checkpoint that leaves any parameter uninitialised is refused.
* preprocessing: the checkpoint's own ``preprocessor_config.json``, read by transformers' image
  processor (so legacy ``feature_extractor_type`` files mean what they mean to transformers) and
  mapped onto a :class:`~sparkvision.preprocess.PreprocessSpec` — then *checked*: the processor and our
  preprocessing run on two test images and must agree to 1e-4, else the import fails.
* labels: ``config.id2label`` (``LABEL_i`` placeholders → a warning), or a labels file you pass.
* activation: sigmoid for ``problem_type == "multi_label_classification"``, else softmax.
* outputs: ``logits`` and ``embeddings`` (the features entering the classification head).

CLIP becomes a zero-shot model: ``model.onnx`` (image tower → projected ``embeddings``),
``text_model.onnx`` (token ids → projected ``text_embeddings``) and ``tokenizer.json`` (run by the
``tokenizers`` package at classification time — no torch), plus CLIP's logit scale.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelImportError
from ..models.spec import MODEL_FILE, ModelSpec
from ..preprocess import PIL_CODE_TO_INTERPOLATION, PreprocessSpec, preprocess_batch
from .common import (
    are_placeholder_labels,
    check_label_count,
    export_onnx,
    fallback_labels,
    imagenet_synsets_for,
    labels_from_mapping,
    load_state_dict,
    random_batch,
    require,
    sha256_files,
)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "checkpoint_weight_files",
    "hf_preprocess_spec",
    "import_hf_checkpoint",
]

log = logging.getLogger(__name__)

#: transformers class → our family name. Each has a parity test (tests/importers/test_hf_parity.py).
SUPPORTED_ARCHITECTURES: dict[str, str] = {
    "ViTForImageClassification": "vit",
    "DeiTForImageClassification": "deit",
    "DeiTForImageClassificationWithTeacher": "deit",
    "BeitForImageClassification": "beit",
    "SwinForImageClassification": "swin",
    "Swinv2ForImageClassification": "swinv2",
    "ConvNextForImageClassification": "convnext",
    "ConvNextV2ForImageClassification": "convnextv2",
    "ResNetForImageClassification": "resnet",
    "RegNetForImageClassification": "regnet",
    "MobileNetV1ForImageClassification": "mobilenet_v1",
    "MobileNetV2ForImageClassification": "mobilenet_v2",
    "EfficientNetForImageClassification": "efficientnet",
    "Data2VecVisionForImageClassification": "data2vec_vision",
    "CLIPModel": "clip",
}
#: The classification head whose input is the ``embeddings`` output (default: ``classifier``).
_HEADS = {"DeiTForImageClassificationWithTeacher": "cls_classifier"}
#: Image processors whose behaviour :func:`hf_preprocess_spec` reproduces (Pil/Fast suffixes dropped).
_PROCESSORS = {
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "BeitImageProcessor",
    "ConvNextImageProcessor",
    "MobileNetV1ImageProcessor",
    "MobileNetV2ImageProcessor",
    "EfficientNetImageProcessor",
    "CLIPImageProcessor",
}
_WEIGHT_FILES = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)
DEFAULT_PROMPT_TEMPLATE = "a photo of a {}"


def _read_config(checkpoint: Path) -> dict[str, Any]:
    config_file = checkpoint / "config.json"
    if not checkpoint.is_dir():
        raise ModelImportError(f"{checkpoint} is not a directory")
    if not config_file.is_file():
        raise ModelImportError(
            f"{checkpoint} is not a Hugging Face checkpoint: it has no config.json (a checkpoint directory "
            f"holds config.json, preprocessor_config.json and model.safetensors, as written by save_pretrained)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelImportError(f"{config_file} cannot be read: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelImportError(f"{config_file} does not hold a JSON object")
    return config


def _architecture(config: dict[str, Any], checkpoint: Path) -> str:
    architectures = config.get("architectures") or []
    arch = architectures[0] if architectures else None
    if arch not in SUPPORTED_ARCHITECTURES:
        what = (
            f"architecture {arch!r}"
            if arch
            else f"model type {config.get('model_type')!r} (no architectures)"
        )
        raise ModelImportError(
            f"{checkpoint}: {what} is not supported. Supported Hugging Face architectures: "
            f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))}. For other models use timm "
            f"(sparkvision import timm:ARCH --weights FILE) or export to ONNX yourself "
            f"(sparkvision import model.onnx --labels ... --size ...)"
        )
    return arch


def checkpoint_weight_files(checkpoint: Path) -> list[Path]:
    """The weight files of a checkpoint (all shards), safetensors first; error when there are none."""
    for index_name, single_name in _WEIGHT_FILES:
        index = checkpoint / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelImportError(f"{index} is not a valid shard index: {exc}") from exc
            missing = [s for s in shards if not (checkpoint / s).is_file()]
            if missing:
                raise ModelImportError(f"{checkpoint}: weight shards missing: {', '.join(missing)}")
            return [checkpoint / s for s in shards]
        if (checkpoint / single_name).is_file():
            return [checkpoint / single_name]
    raise ModelImportError(
        f"{checkpoint} has no weights: expected model.safetensors (or pytorch_model.bin) beside config.json"
    )


def _license_of(checkpoint: Path) -> str:
    """The ``license:`` of the model card's YAML header (README.md), if the checkpoint has one."""
    readme = checkpoint / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    if not text.startswith("---"):
        return ""
    header = text[3:].split("\n---", 1)[0]
    match = re.search(r"^license:\s*([^\s#]+)", header, flags=re.MULTILINE)
    return match.group(1).strip("'\"") if match else ""


# -- preprocessing -------------------------------------------------------------------------------------
def _size(value: Any) -> dict[str, int]:
    """A transformers size (``SizeDict``, dict or int) as a plain dict of its set keys."""
    if value is None:
        return {}
    if isinstance(value, int):
        return {"height": value, "width": value}
    keys = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")
    if isinstance(value, dict):
        return {k: int(value[k]) for k in keys if value.get(k) is not None}
    return {k: int(getattr(value, k)) for k in keys if getattr(value, k, None) is not None}


def crop_pct_for(crop: int, short_side: int) -> float:
    """The ``crop_pct`` for which ``floor(crop / crop_pct) == short_side`` holds exactly in floats."""
    if crop > short_side:
        raise ModelImportError(f"a {crop} px centre crop of a {short_side} px resize would need padding")
    pct = crop / short_side
    for _ in range(8):
        if math.floor(crop / pct) == short_side:
            return pct
        pct = math.nextafter(pct, 0.0) if math.floor(crop / pct) < short_side else math.nextafter(pct, 1.0)
    raise ModelImportError(
        f"cannot express a {short_side} px resize with a {crop} px crop"
    )  # pragma: no cover


def hf_preprocess_spec(processor: Any) -> PreprocessSpec:
    """Map a transformers image processor onto a :class:`PreprocessSpec` (same maths, same pixels)."""
    kind = type(processor).__name__
    base = kind.removesuffix("Pil").removesuffix("Fast")
    if base not in _PROCESSORS:
        raise ModelImportError(
            f"image processor {kind} is not supported (supported: {', '.join(sorted(_PROCESSORS))})"
        )

    def get(name: str, default: Any = None) -> Any:
        value = getattr(processor, name, default)
        return default if value is None else value

    if get("do_pad", False) or get("do_reduce_labels", False):
        raise ModelImportError(f"{kind} with padding or label reduction is not supported")
    resample = int(get("resample", 2))
    if resample not in PIL_CODE_TO_INTERPOLATION:
        raise ModelImportError(f"{kind}: unknown resample filter {resample}")
    size = _size(get("size"))
    crop = _size(get("crop_size")) if get("do_center_crop", False) else {}
    if crop and crop.get("height") != crop.get("width"):
        raise ModelImportError(f"{kind}: non-square crops are not supported ({crop})")
    crop_side = crop.get("height")
    geometry: dict[str, Any]
    if not get("do_resize", True):
        side = crop_side or size.get("height") or size.get("shortest_edge")
        geometry = {"size": side, "do_resize": False, "resize": "squash"}
    elif base == "ConvNextImageProcessor":
        edge = size.get("shortest_edge")
        if edge is None or crop:
            raise ModelImportError(f"{kind}: expected size {{'shortest_edge': N}} and no extra centre crop")
        if edge < 384:  # transformers: short side to int(edge / crop_pct), centre crop edge × edge
            geometry = {"size": edge, "resize": "crop", "crop_pct": float(get("crop_pct", 224 / 256))}
        else:  # transformers warps to edge × edge at 384 and above
            geometry = {"size": edge, "resize": "squash"}
    elif "height" in size and "width" in size:
        if size["height"] != size["width"]:
            raise ModelImportError(f"{kind}: non-square resize {size} is not supported")
        side = size["height"]
        if crop_side is None or crop_side == side:
            geometry = {"size": side, "resize": "squash"}
        else:
            geometry = {"size": crop_side, "resize": "squash_crop", "crop_pct": crop_pct_for(crop_side, side)}
    elif set(size) == {"shortest_edge"}:
        if crop_side is None:
            raise ModelImportError(
                f"{kind}: a short-side resize without a centre crop gives non-square inputs"
            )
        edge = size["shortest_edge"]
        geometry = {"size": crop_side, "resize": "crop", "crop_pct": crop_pct_for(crop_side, edge)}
    else:
        raise ModelImportError(f"{kind}: resize {size} is not supported")

    do_rescale = bool(get("do_rescale", True))
    factor = float(get("rescale_factor", 1 / 255)) if do_rescale else 1.0
    do_normalize = bool(get("do_normalize", True))
    mean = np.array(_triple(get("image_mean", 0.0)) if do_normalize else (0.0,) * 3, dtype=np.float64)
    std = np.array(_triple(get("image_std", 1.0)) if do_normalize else (1.0,) * 3, dtype=np.float64)
    affine = do_normalize
    if base == "EfficientNetImageProcessor":
        if do_rescale and get("rescale_offset", False):  # x * factor - 1
            mean = mean + 1.0
            affine = True
        if get("include_top", True):  # a second normalisation by std alone: (x - m) / s / s
            std = std * np.array(_triple(get("image_std", 1.0)), dtype=np.float64)
            affine = True
    return PreprocessSpec(
        **{"crop_pct": 1.0, **geometry},
        interpolation=PIL_CODE_TO_INTERPOLATION[resample],
        do_rescale=do_rescale,
        rescale_factor=factor,
        do_normalize=affine,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        crop_rounding="floor",
    )


def _triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    return values * 3 if len(values) == 1 else values  # type: ignore[return-value]


def check_preprocessing(processor: Any, spec: PreprocessSpec, tolerance: float = 1e-4) -> None:
    """Run the processor and ``spec`` on two test images; refuse the import if they disagree."""
    from PIL import Image

    rng = np.random.default_rng(0)
    # Odd sizes where torchvision's rounded and Hugging Face's floored centre crops differ.
    shapes = [(251, 333), (397, 261)] if spec.do_resize else [(spec.size, spec.size)]
    images = []
    for height, width in shapes:
        base = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        smooth = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 21, size=(height, width, 3))
        images.append(
            Image.fromarray(np.clip(np.asarray(smooth, dtype=np.int32) + noise, 0, 255).astype(np.uint8))
        )
    theirs = np.asarray(processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float64)
    ours = preprocess_batch(images, spec).astype(np.float64)
    if theirs.shape != ours.shape:
        raise ModelImportError(
            f"{type(processor).__name__} produces inputs of shape {theirs.shape[1:]}, ours {ours.shape[1:]}: "
            f"this preprocessing configuration is not supported"
        )
    delta = float(np.abs(theirs - ours).max())
    if delta > tolerance:
        raise ModelImportError(
            f"{type(processor).__name__}'s preprocessing cannot be reproduced exactly (max |Δ| {delta:.3g}); "
            f"this preprocessing configuration is not supported"
        )


def _load_processor(checkpoint: Path) -> Any:
    transformers = require("transformers", "importing a Hugging Face checkpoint")
    if not (checkpoint / "preprocessor_config.json").is_file():
        return None
    try:
        return transformers.AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil")
    except TypeError:  # transformers 4.x: the slow processor is the PIL one
        return transformers.AutoImageProcessor.from_pretrained(str(checkpoint), use_fast=False)
    except Exception as exc:
        raise ModelImportError(f"{checkpoint}/preprocessor_config.json cannot be read: {exc}") from exc


def _preprocess_for(checkpoint: Path, override: PreprocessSpec | None) -> PreprocessSpec:
    processor = _load_processor(checkpoint)
    if override is not None:
        return override
    if processor is None:
        raise ModelImportError(
            f"{checkpoint} has no preprocessor_config.json, so its preprocessing is unknown; give it "
            f"explicitly (sparkvision import … --size 224 --resize squash --mean … --std …)"
        )
    spec = hf_preprocess_spec(processor)
    check_preprocessing(processor, spec)
    return spec


# -- loading -------------------------------------------------------------------------------------------
def _load_model(checkpoint: Path, arch: str, weights: list[Path]) -> Any:
    transformers = require("transformers", "importing a Hugging Face checkpoint")
    for file in weights:  # refuse pickles with code before transformers opens them
        if file.suffix != ".safetensors":
            load_state_dict(file)
    transformers.utils.logging.disable_progress_bar()  # one summary line from us is enough
    cls = getattr(transformers, arch, None)
    if cls is None:
        raise ModelImportError(
            f"transformers {transformers.__version__} has no {arch}; upgrade transformers to import this checkpoint"
        )
    try:
        model, info = cls.from_pretrained(
            str(checkpoint), output_loading_info=True, attn_implementation="eager", dtype="float32"
        )
    except Exception as exc:
        raise ModelImportError(f"{checkpoint}: transformers cannot load it as {arch}: {exc}") from exc
    problems = []
    for key, what in (("missing_keys", "missing"), ("mismatched_keys", "with the wrong shape")):
        keys = list(info.get(key) or [])
        if keys:
            shown = ", ".join(str(k) for k in keys[:5]) + (" …" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} weights {what} ({shown})")
    if problems:
        raise ModelImportError(
            f"{checkpoint}: the weights do not match the {arch} in config.json: {'; '.join(problems)}"
        )
    return model.eval().float()


# -- image classification ----------------------------------------------------------------------------
def import_hf_checkpoint(
    checkpoint: Path,
    directory: Path,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    activation: str | None = None,
    preprocess: PreprocessSpec | None = None,
    source: str | None = None,
    license: str | None = None,
) -> ModelSpec:
    """Convert ``checkpoint`` into a sparkvision model written into ``directory``; returns its spec."""
    checkpoint = Path(checkpoint)
    config = _read_config(checkpoint)
    arch = _architecture(config, checkpoint)
    if arch == "CLIPModel" and labels is not None:
        raise ModelImportError(
            "CLIP is a zero-shot model: give candidate labels when classifying, not when importing"
        )
    weights = checkpoint_weight_files(checkpoint)
    pre = _preprocess_for(checkpoint, preprocess)
    model = _load_model(checkpoint, arch, weights)
    source = source or f"local:{checkpoint.resolve()}"
    license = license if license is not None else _license_of(checkpoint)
    if arch == "CLIPModel":
        from .clip import import_clip

        return import_clip(
            checkpoint,
            directory,
            name=name,
            weights=weights,
            preprocess=pre,
            model=model,
            source=source,
            license=license,
        )
    num_outputs = int(model.config.num_labels)

    if labels is not None:
        label_list = tuple(labels)
    else:
        id2label = getattr(model.config, "id2label", None) or {}
        label_list = tuple(labels_from_mapping(id2label, f"{checkpoint}/config.json")) if id2label else ()
        if not label_list or are_placeholder_labels(label_list):
            label_list = fallback_labels(num_outputs, f"{checkpoint}/config.json")
    check_label_count(label_list, num_outputs, str(checkpoint))

    problem = getattr(model.config, "problem_type", None)
    chosen = activation or ("sigmoid" if problem == "multi_label_classification" else "softmax")

    from .wrappers import HFClassifier

    wrapper = HFClassifier(model, getattr(model, _HEADS.get(arch, "classifier")))
    export_onnx(
        wrapper,
        random_batch(pre.size, 2),
        directory / MODEL_FILE,
        output_names=("logits", "embeddings"),
        check_batch=random_batch(pre.size, 3, seed=1),
    )
    return ModelSpec(
        name=name,
        family=SUPPORTED_ARCHITECTURES[arch],
        preprocess=pre,
        labels=label_list,
        synsets=imagenet_synsets_for(label_list),
        activation=chosen,  # type: ignore[arg-type]
        outputs=("logits", "embeddings"),
        source=source,
        license=license,
        weights_sha256=sha256_files(weights),
        extra={"architecture": arch, "importer": "huggingface"},
    )
