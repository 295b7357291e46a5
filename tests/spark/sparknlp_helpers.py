"""Shared by the tests written in the shape of Spark NLP's vision tests (test_sparknlp_*.py).

Spark NLP's tests read a folder of photos with ``spark.read.format("image")``, build
``ImageAssembler`` + ``<Annotator>.pretrained()``, and compare ``class.result`` per file with a gold
standard. Here the photos are the project's real ones; the gold standard is either written down (the
real EfficientNet-Lite0) or what transformers itself predicts for a tiny random model of the family,
on exactly the pixels Spark's image source decoded (so the reference and the stage see the same image).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from spark_helpers import EXAMPLES

from sparkvision.images import decode_bgr_struct

#: Spark NLP's tests use hippopotamus.JPEG for one image and [hippopotamus, egyptian_cat] for a list.
PHOTOS = ("coffee.jpg", "camera.png", "rocket.jpg", "chelsea.jpg")
ONE_IMAGE = "coffee.jpg"
TWO_IMAGES = ("coffee.jpg", "chelsea.jpg")
SIZE = 32


def photo_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def spark_pixels(spark: Any, folder: Path) -> dict[str, Image.Image]:
    """Each photo as Spark's image source decodes it (BGR struct → RGB), by file name."""
    rows = spark.read.format("image").load(path=str(folder)).select("image.*").collect()
    return {
        row.origin.rsplit("/", 1)[-1]: decode_bgr_struct(
            row.height, row.width, row.nChannels, row.mode, row.data
        ).image
        for row in rows
    }


def tiny_checkpoint(family: str, directory: Path, labels: list[str]) -> Any:
    """A tiny random Hugging Face classifier of ``family`` saved with ``save_pretrained`` and its family's
    ``preprocessor_config.json``; the head is scaled so scores differ clearly between photos."""
    import torch
    import transformers

    id2label = dict(enumerate(labels))
    common = {
        "num_labels": len(labels),
        "id2label": id2label,
        "label2id": {v: k for k, v in id2label.items()},
    }
    imagenet = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    torch.manual_seed(0)
    if family == "swin":
        config = transformers.SwinConfig(
            image_size=SIZE,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=4,
            **common,
        )
        model = transformers.SwinForImageClassification(config)
        processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "do_normalize": True,
                     "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3,
                     "size": {"height": SIZE, "width": SIZE}, **imagenet}  # fmt: skip
    elif family == "convnext":
        config = transformers.ConvNextConfig(
            image_size=SIZE, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **common
        )
        model = transformers.ConvNextForImageClassification(config)
        processor = {"image_processor_type": "ConvNextImageProcessor", "do_resize": True, "do_normalize": True,
                     "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3, "crop_pct": 0.875,
                     "size": {"shortest_edge": SIZE}, **imagenet}  # fmt: skip
    else:
        raise ValueError(family)
    model.eval()
    with torch.no_grad():
        model.classifier.weight.data *= 30
    model.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(processor))
    return model


def transformers_labels(model: Any, checkpoint: Path, images: dict[str, Image.Image]) -> dict[str, str]:
    """What transformers predicts: its own (Pillow) image processor, then its own forward pass."""
    import torch
    import transformers

    try:
        processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil")
    except TypeError:
        processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), use_fast=False)
    names = sorted(images)
    with torch.no_grad():
        logits = model(**processor(images=[images[n] for n in names], return_tensors="pt")).logits.numpy()
    top = np.argsort(-logits, axis=1)
    assert all(row[top[i, 0]] - row[top[i, 1]] > 1e-3 for i, row in enumerate(logits)), "near-tie: unstable"
    return {name: model.config.id2label[int(top[i, 0])] for i, name in enumerate(names)}


def transformers_zero_shot_labels(
    checkpoint: Path, labels: list[str], images: dict[str, Image.Image]
) -> dict[str, str]:
    """What transformers' CLIP picks among ``labels`` (encoded as written, as Spark NLP does)."""
    import torch
    import transformers

    model = transformers.CLIPModel.from_pretrained(str(checkpoint)).eval()
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(checkpoint))
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil")
    except TypeError:
        processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), use_fast=False)
    names = sorted(images)
    text = tokenizer(labels, padding=True, return_tensors="pt")
    pixels = processor(images=[images[n] for n in names], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(**text, pixel_values=pixels).logits_per_image.numpy()
    top = np.argsort(-logits, axis=1)
    assert all(row[top[i, 0]] - row[top[i, 1]] > 1e-3 for i, row in enumerate(logits)), "near-tie: unstable"
    return {name: labels[int(top[i, 0])] for i, name in enumerate(names)}
