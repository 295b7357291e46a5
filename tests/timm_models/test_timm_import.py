"""timm import: parity with timm's own eval transform + forward pass on real photos, and the
EfficientNet-Lite preprocessing reference check. Runs in the timm environment (scripts/ci_timm_tests.sh)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.engine import get_engine  # noqa: E402
from sparkvision.errors import ModelImportError  # noqa: E402
from sparkvision.images import decode_image  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.labels import imagenet1k_labels, imagenet1k_synsets  # noqa: E402
from sparkvision.models.catalogue import resolve_model  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402
from sparkvision.preprocess import preprocess, preprocess_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = [ROOT / "examples" / "images" / n for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.png")]  # fmt: skip
TOLERANCE = 1e-3


def _photos() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in PHOTOS]


def _model(arch: str, **kwargs: Any) -> Any:
    """A randomly initialised timm model whose head is scaled so its logits are well spread."""
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kwargs).eval()
    logits = _reference(model, _photos()[:2])
    head = model.get_classifier()
    with torch.no_grad():
        factor = 4.0 / max(float(logits.std()), 1e-6)
        head.weight *= factor
        head.bias *= factor
    return model


def _reference(model: Any, images: list[Image.Image]) -> np.ndarray:
    """timm's answer: its eval transform from the model's pretrained config, then its forward pass."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        return model(torch.stack([transform(image) for image in images])).numpy()


def _ours(model_dir: Path) -> np.ndarray:
    spec = load_model_dir(model_dir)
    batch = preprocess_batch([decode_image(p).image for p in PHOTOS], spec.preprocess)
    return get_engine(model_dir / "model.onnx").run(batch, ["logits"])[0]


def _top5(scores: np.ndarray) -> list[list[int]]:
    return [list(np.argsort(-row, kind="stable")[:5]) for row in scores]


CASES = {
    # timm name: (expected interpolation, input size)
    "resnet18.tv_in1k": ("bilinear", 224),
    "densenet121.tv_in1k": ("bicubic", 224),
    "mobilenetv3_small_100.lamb_in1k": ("bicubic", 224),
    # TensorFlow-style "same" padding, as in the EfficientNet-B7 weights (B7 itself: see the next test).
    "tf_efficientnet_b0.ns_jft_in1k": ("bicubic", 224),
}


@pytest.mark.parametrize(
    "arch",
    [
        "tf_efficientnet_b7.ra_in1k",
        "convnext_tiny.fb_in22k_ft_in1k_384",
        "vit_base_patch16_clip_224.openai_ft_in12k_in1k",
    ],
)
def test_timm_preprocessing_maps_exactly(arch: str) -> None:
    """Heavier models' preprocessing (B7: 600 px, crop 0.949) without running them: our spec on real
    photos equals timm's eval transform built from the same pretrained config."""
    from sparkvision.importers.timm_import import timm_preprocess_spec

    config = timm.data.resolve_data_config(timm.get_pretrained_cfg(arch).to_dict())
    spec = timm_preprocess_spec(config)
    transform = timm.data.create_transform(**config)
    for image in _photos():
        theirs = transform(image).numpy()
        assert np.abs(preprocess(image, spec) - theirs).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(CASES))
def test_timm_model_matches_timm_on_real_photos(arch: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = _model(arch)
    weights = tmp_path / "weights.safetensors"
    save_file(model.state_dict(), str(weights))
    expected = _reference(model, _photos())
    assert expected.std() > 1.0

    model_dir = import_model(f"timm:{arch}", weights=weights, output_dir=tmp_path / "model")
    spec = load_model_dir(model_dir)
    interpolation, size = CASES[arch]
    assert (spec.preprocess.interpolation, spec.preprocess.size, spec.preprocess.crop_rounding) == (
        interpolation, size, "round")  # fmt: skip
    assert spec.labels == imagenet1k_labels() and spec.synsets == imagenet1k_synsets()
    assert spec.source == f"timm:{arch}" and spec.license == model.pretrained_cfg["license"]
    logits = _ours(model_dir)
    assert np.abs(logits - expected).max() <= TOLERANCE
    assert _top5(logits) == _top5(expected)

    exact = Classifier(model_dir, decode="exact")  # parity: the reference's resize, not the fast crop window
    predictions = list(exact.classify([str(p) for p in PHOTOS], top_k=5, embeddings=True))
    with torch.no_grad():
        transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
        features = model.forward_head(
            model.forward_features(torch.stack([transform(i) for i in _photos()])), pre_logits=True
        ).numpy()
    for prediction, want, feature in zip(predictions, _top5(expected), features):
        assert list(prediction.class_ids) == want
        assert np.abs(prediction.embedding - feature).max() <= TOLERANCE


def test_pth_training_checkpoint_and_hub_directory(tmp_path: Path) -> None:
    model = _model("resnet18.tv_in1k", num_classes=7)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "optimizer": {"lr": 0.1}}, checkpoint)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"kind {i}" for i in range(7)) + "\n")
    spec = load_model_dir(
        import_model("timm:resnet18.tv_in1k", weights=checkpoint, labels=labels, output_dir=tmp_path / "a")
    )
    assert spec.labels == tuple(f"kind {i}" for i in range(7)) and spec.synsets is None

    # A directory as timm's Hub tools save it, with a squash crop in its pretrained config.
    hub = tmp_path / "hub"
    squash = timm.create_model("resnet18.tv_in1k", pretrained=False, num_classes=7, pretrained_cfg_overlay={"crop_mode": "squash"})  # fmt: skip
    squash.load_state_dict(model.state_dict())
    timm.models.save_for_hf(squash.eval(), str(hub))
    config = json.loads((hub / "config.json").read_text())
    assert config["pretrained_cfg"]["crop_mode"] == "squash"
    model_dir = import_model(hub, "hubdir", output_dir=tmp_path / "b", labels=labels)
    pre = load_model_dir(model_dir).preprocess
    assert (pre.resize, pre.size) == ("squash_crop", 224)
    expected = _reference(squash.eval(), _photos())
    assert np.abs(_ours(model_dir) - expected).max() <= TOLERANCE


def test_timm_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="needs its weights"):
        import_model("timm:resnet18", output_dir=tmp_path / "x")
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(3, 4)}, str(weights))
    with pytest.raises(ModelImportError, match="timm has no architecture 'resnet1800'"):
        import_model("timm:resnet1800", weights=weights, output_dir=tmp_path / "x")
    with pytest.raises(ModelImportError, match="does not fit timm's resnet18"):
        import_model("timm:resnet18", weights=weights, output_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_preprocessing_equals_timm(variant: int) -> None:
    """Our built-in Lite models' preprocessing vs timm's tf_efficientnet_lite{N} config + create_transform."""
    model = timm.create_model(f"tf_efficientnet_lite{variant}.in1k", pretrained=False)
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    _, spec = resolve_model(f"efficientnet_lite{variant}")
    assert spec.preprocess.size == config["input_size"][1]
    assert spec.preprocess.crop_pct == pytest.approx(config["crop_pct"])
    for image in _photos():
        theirs = transform(image).numpy()
        ours = preprocess(image, spec.preprocess)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() <= 1e-5
