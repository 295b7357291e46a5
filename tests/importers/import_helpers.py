"""Helpers for the import tests (imported by name, like tests/serve/serve_helpers.py): tiny randomly initialised checkpoints saved the way the frameworks save
them, real photos, and the reference forward pass (the framework's own preprocessing + model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sparkvision.engine import get_engine
from sparkvision.images import decode_image
from sparkvision.models.store import load_model_dir
from sparkvision.preprocess import preprocess_batch

ROOT = Path(__file__).resolve().parents[2]
#: Real photos (see examples/images/SOURCES.md). rocket.jpg (640×427) makes Hugging Face's floored and
#: torchvision's rounded centre crops differ by a pixel; camera.png is greyscale.
PHOTOS = [ROOT / "examples" / "images" / n for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.png")]  # fmt: skip

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]


def photos_rgb() -> list[Image.Image]:
    """The photos as the frameworks' users load them."""
    return [Image.open(p).convert("RGB") for p in PHOTOS]


def save_checkpoint(
    model: Any, processor_config: dict[str, Any], directory: Path, *, logit_std: float = 4.0
) -> Path:
    """Spread the head's logits (random heads give near-ties), then ``save_pretrained`` + the
    checkpoint's ``preprocessor_config.json`` exactly as its Hub repo ships it."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "preprocessor_config.json").write_text(json.dumps(processor_config))
    model.eval()
    if logit_std:
        logits = reference_logits(model, directory)
        factor = logit_std / max(float(logits.std()), 1e-6)
        for name in ("classifier", "cls_classifier", "distillation_classifier"):
            head = getattr(model, name, None)
            if head is None:
                continue
            for layer in head.modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.data *= factor
                    layer.bias.data *= factor
    model.save_pretrained(directory)
    return directory


def hf_processor(directory: Path) -> Any:
    import transformers

    try:
        return transformers.AutoImageProcessor.from_pretrained(str(directory), backend="pil")
    except TypeError:
        return transformers.AutoImageProcessor.from_pretrained(str(directory), use_fast=False)


def reference_logits(model: Any, directory: Path) -> np.ndarray:
    """The framework's answer: its own image processor, then its own forward pass."""
    import torch

    inputs = hf_processor(directory)(images=photos_rgb(), return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.float().numpy()


def our_outputs(model_dir: Path, outputs: tuple[str, ...] = ("logits",)) -> list[np.ndarray]:
    """Our answer: sparkvision's decoder and preprocessing, then ONNX Runtime on the imported model."""
    spec = load_model_dir(model_dir)
    images = [decode_image(p).image for p in PHOTOS]
    batch = preprocess_batch(images, spec.preprocess)
    return get_engine(model_dir / "model.onnx").run(batch, list(outputs))


def top5(scores: np.ndarray) -> list[list[int]]:
    return [list(np.argsort(-row, kind="stable")[:5]) for row in scores]


def label_map(count: int) -> dict[str, Any]:
    id2label = {i: f"class {i}" for i in range(count)}
    return {"num_labels": count, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
