"""Numerical parity of imported Hugging Face models, family by family.

Each case builds a tiny randomly initialised model with the family's real architecture, saves it with
``save_pretrained`` beside the ``preprocessor_config.json`` its real Hub checkpoint ships (legacy
``feature_extractor_type`` files included), imports it, and compares our ONNX Runtime logits — after
our own decoding and preprocessing of real photos — with transformers' forward pass after transformers'
own image processor. This is what proves the preprocessing facts per family.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from import_helpers import (  # noqa: E402
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    label_map,
    our_outputs,
    reference_logits,
    save_checkpoint,
    top5,
)

from sparkvision import Classifier  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402

pytestmark = pytest.mark.slow

TOLERANCE = 1e-3
VIT_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}

# The preprocessor configs of the real checkpoints, as their Hub repos ship them.
PRE_VIT = {
    "feature_extractor_type": "ViTFeatureExtractor",
    "do_normalize": True,
    "do_resize": True,
    "image_mean": HALF,
    "image_std": HALF,
    "resample": 2,
    "size": 224,
}  # google/vit-base-patch16-224
PRE_DEIT = {
    "feature_extractor_type": "DeiTFeatureExtractor",
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "resample": 3,
    "size": 256,
}  # facebook/deit-base-distilled-patch16-224
PRE_BEIT = {
    "feature_extractor_type": "BeitFeatureExtractor",
    "crop_size": 224,
    "do_center_crop": False,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": HALF,
    "image_std": HALF,
    "resample": 2,
    "size": 224,
}  # microsoft/beit-base-patch16-224, facebook/data2vec-vision-base-ft1k
PRE_SWIN = {
    "feature_extractor_type": "ViTFeatureExtractor",
    "do_normalize": True,
    "do_resize": True,
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "resample": 3,
    "size": 224,
}
PRE_SWINV2 = {**PRE_SWIN, "size": 256}  # microsoft/swinv2-tiny-patch4-window8-256
PRE_CONVNEXT = {
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "resample": 3,
    "size": 224,
}  # facebook/convnext-tiny-224, microsoft/resnet-50, facebook/regnet-y-040
PRE_CONVNEXTV2 = {
    "image_processor_type": "ConvNextImageProcessor",
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 224},
}
PRE_MOBILENET = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": HALF,
    "image_std": HALF,
    "resample": 2,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 256},
}  # google/mobilenet_v{1,2}_1.0_224
PRE_EFFICIENTNET = {"image_processor_type": "EfficientNetImageProcessor", "crop_size": {"height": 289, "width": 289},
                    "do_center_crop": False, "do_normalize": True, "do_rescale": True, "do_resize": True,
                    "image_mean": IMAGENET_MEAN, "image_std": [0.47853944, 0.4732864, 0.47434163],
                    "include_top": True, "resample": 0, "rescale_factor": 1 / 255, "rescale_offset": False,
                    "size": {"height": 224, "width": 224}}  # google/efficientnet-b0  # fmt: skip


def _vit() -> Any:
    config = transformers.ViTConfig(**VIT_TINY, image_size=224, patch_size=16, **label_map(10))
    return transformers.ViTForImageClassification(config)


def _deit() -> Any:
    config = transformers.DeiTConfig(**VIT_TINY, image_size=224, patch_size=16, **label_map(10))
    return transformers.DeiTForImageClassificationWithTeacher(config)


def _beit() -> Any:
    config = transformers.BeitConfig(
        **VIT_TINY, image_size=224, patch_size=16, use_relative_position_bias=True, use_mean_pooling=True,
        layer_scale_init_value=0.1, **label_map(10),
    )  # fmt: skip
    return transformers.BeitForImageClassification(config)


def _data2vec() -> Any:
    config = transformers.Data2VecVisionConfig(
        **VIT_TINY, image_size=224, patch_size=16, use_relative_position_bias=True, use_mean_pooling=True,
        layer_scale_init_value=0.1, **label_map(10),
    )  # fmt: skip
    return transformers.Data2VecVisionForImageClassification(config)


def _swin() -> Any:
    config = transformers.SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=7,
        **label_map(10),
    )
    return transformers.SwinForImageClassification(config)


def _swinv2() -> Any:
    config = transformers.Swinv2Config(
        image_size=256,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=8,
        **label_map(10),
    )
    return transformers.Swinv2ForImageClassification(config)


def _convnext() -> Any:
    config = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **label_map(10))
    return transformers.ConvNextForImageClassification(config)


def _convnextv2() -> Any:
    config = transformers.ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **label_map(10))
    return transformers.ConvNextV2ForImageClassification(config)


def _resnet() -> Any:
    config = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck", **label_map(10)
    )
    return transformers.ResNetForImageClassification(config)


def _regnet() -> Any:
    config = transformers.RegNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8, layer_type="y", **label_map(10)
    )
    return transformers.RegNetForImageClassification(config)


def _he_init(model: Any) -> Any:
    """He-initialised convs and unit BatchNorms: transformers' small random init makes these BatchNorm
    nets in eval mode (running stats 0/1) shrink their activations to ~1e-26 within a dozen layers."""
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        elif isinstance(layer, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return model


def _mobilenet_v1() -> Any:
    config = transformers.MobileNetV1Config(depth_multiplier=0.25, image_size=224, **label_map(10))
    return _he_init(transformers.MobileNetV1ForImageClassification(config))


def _mobilenet_v2() -> Any:
    config = transformers.MobileNetV2Config(depth_multiplier=0.25, image_size=224, **label_map(10))
    return _he_init(transformers.MobileNetV2ForImageClassification(config))


def _efficientnet() -> Any:
    config = transformers.EfficientNetConfig(
        image_size=224, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, **label_map(10)
    )
    model = _he_init(transformers.EfficientNetForImageClassification(config))
    torch.nn.init.normal_(model.classifier.weight, std=0.1)  # transformers starts it at zero
    return model


FAMILIES: dict[str, tuple[Callable[[], Any], dict[str, Any], str, int]] = {
    # family: (tiny model, real preprocessor config, expected resize mode, expected input size)
    "vit": (_vit, PRE_VIT, "squash", 224),
    "deit": (_deit, PRE_DEIT, "squash_crop", 224),
    "beit": (_beit, PRE_BEIT, "squash", 224),
    "data2vec_vision": (_data2vec, PRE_BEIT, "squash", 224),
    "swin": (_swin, PRE_SWIN, "squash", 224),
    "swinv2": (_swinv2, PRE_SWINV2, "squash", 256),
    "convnext": (_convnext, PRE_CONVNEXT, "crop", 224),
    "convnextv2": (_convnextv2, PRE_CONVNEXTV2, "crop", 224),
    "resnet": (_resnet, PRE_CONVNEXT, "crop", 224),
    "regnet": (_regnet, PRE_CONVNEXT, "crop", 224),
    "mobilenet_v1": (_mobilenet_v1, {**PRE_MOBILENET, "image_processor_type": "MobileNetV1ImageProcessor"}, "crop", 224),
    "mobilenet_v2": (_mobilenet_v2, {**PRE_MOBILENET, "image_processor_type": "MobileNetV2ImageProcessor"}, "crop", 224),
    "efficientnet": (_efficientnet, PRE_EFFICIENTNET, "squash", 224),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_imported_model_matches_transformers_on_real_photos(family: str, tmp_path: Path) -> None:
    make, processor_config, resize, size = FAMILIES[family]
    torch.manual_seed(0)
    model = make().eval()
    checkpoint = save_checkpoint(model, processor_config, tmp_path / "checkpoint")
    expected = reference_logits(model, checkpoint)
    assert expected.std() > 1.0, "degenerate reference model: its logits would make any comparison pass"

    model_dir = import_model(checkpoint, "tiny", output_dir=tmp_path / "model")
    spec = load_model_dir(model_dir)
    assert spec.family == family
    assert (spec.preprocess.size, spec.preprocess.resize) == (size, resize)
    assert spec.labels == tuple(f"class {i}" for i in range(10))
    assert spec.activation == "softmax" and spec.outputs == ("logits", "embeddings")
    assert spec.weights_sha256 and len(spec.weights_sha256) == 64

    (logits,) = our_outputs(model_dir)
    assert np.abs(logits - expected).max() <= TOLERANCE
    assert top5(logits) == top5(expected)

    # End to end through the classifier: same top-5 labels, softmax scores equal to transformers'
    # (decode="exact": the default fast mode's crop-window resampling moves a few pixels by a level).
    probabilities = torch.softmax(torch.from_numpy(expected), dim=1).numpy()
    from import_helpers import PHOTOS

    predictions = list(Classifier(model_dir, decode="exact").classify([str(p) for p in PHOTOS], top_k=5))
    for prediction, want, row in zip(predictions, top5(expected), probabilities):
        assert prediction.error is None
        assert list(prediction.class_ids) == want
        assert np.allclose(prediction.scores, row[want], atol=TOLERANCE)


def test_a_preprocessing_mistake_is_caught_by_the_parity_check(tmp_path: Path) -> None:
    """The comparison above can fail: ViT imported with bicubic instead of bilinear resizing differs."""
    torch.manual_seed(0)
    model = _vit().eval()
    checkpoint = save_checkpoint(model, PRE_VIT, tmp_path / "checkpoint")
    expected = reference_logits(model, checkpoint)
    right = load_model_dir(import_model(checkpoint, "right", output_dir=tmp_path / "right")).preprocess
    wrong = right.__class__(**{**right.to_dict(), "interpolation": "bicubic"})
    model_dir = import_model(checkpoint, "wrong", output_dir=tmp_path / "wrong", preprocess=wrong)
    (logits,) = our_outputs(model_dir)
    assert np.abs(logits - expected).max() > TOLERANCE


def test_crop_rounding_matters_for_hugging_face_crops(tmp_path: Path) -> None:
    """ConvNeXt on rocket.jpg (640×427): torchvision's rounded crop offset would be one pixel off."""
    torch.manual_seed(0)
    model = _convnext().eval()
    checkpoint = save_checkpoint(model, PRE_CONVNEXT, tmp_path / "checkpoint")
    expected = reference_logits(model, checkpoint)
    right = load_model_dir(import_model(checkpoint, "right", output_dir=tmp_path / "right")).preprocess
    assert right.crop_rounding == "floor"
    wrong = right.__class__(**{**right.to_dict(), "crop_rounding": "round"})
    (logits,) = our_outputs(
        import_model(checkpoint, "wrong", output_dir=tmp_path / "wrong", preprocess=wrong)
    )
    rocket = 2
    assert np.abs(logits[rocket] - expected[rocket]).max() > TOLERANCE
    assert np.abs(logits[:rocket] - expected[:rocket]).max() <= TOLERANCE


def test_imagenet_checkpoint_keeps_its_labels_and_gains_synsets(tmp_path: Path) -> None:
    from sparkvision.labels import imagenet1k_labels, imagenet1k_synsets

    labels = {i: label for i, label in enumerate(imagenet1k_labels())}
    config = transformers.ViTConfig(
        **VIT_TINY, image_size=224, patch_size=16, num_labels=1000, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    checkpoint = save_checkpoint(
        transformers.ViTForImageClassification(config), PRE_VIT, tmp_path / "ckpt", logit_std=0
    )
    spec = load_model_dir(import_model(checkpoint, "in1k", output_dir=tmp_path / "model"))
    assert spec.labels == imagenet1k_labels()
    assert spec.synsets == imagenet1k_synsets()
