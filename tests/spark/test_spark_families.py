"""ViT, Swin and ConvNeXt stages on small randomly initialised Hugging Face models of each family.

The test exports each model to ONNX with its family's preprocessing (as the importer writes it), loads
it through the family's stage (``loadSavedModel``, and ``pretrained(name)`` once it is in the cache),
and checks one pipeline holding all three against the embedded core on real photos.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import Pipeline

from sparkvision import Classifier
from sparkvision.annotator import (
    ConvNextForImageClassification,
    SwinForImageClassification,
    ViTForImageClassification,
)
from sparkvision.base import ImageAssembler, LightPipeline, prediction_columns, read_images
from sparkvision.models.spec import ModelSpec
from sparkvision.models.store import models_root
from sparkvision.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SIZE = 32
LABELS = ("cat", "coffee", "rocket", "person", "camera")


def _export(model, directory: Path, family: str, preprocess: PreprocessSpec) -> Path:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    directory.mkdir(parents=True)
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model),
            (torch.zeros(1, 3, SIZE, SIZE),),
            str(directory / "model.onnx"),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "n"}, "logits": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    ModelSpec(
        name=f"tiny_{family}", family=family, preprocess=preprocess, labels=LABELS, source="tests"
    ).save(directory)
    return directory


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("families")
    labels = {"num_labels": len(LABELS)}
    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            image_size=SIZE,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            **labels,
        )
    )
    swin = transformers.SwinForImageClassification(
        transformers.SwinConfig(
            image_size=SIZE,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=4,
            **labels,
        )
    )
    convnext = transformers.ConvNextForImageClassification(
        transformers.ConvNextConfig(
            image_size=SIZE, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **labels
        )
    )
    imagenet = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return {
        "vit": _export(
            vit,
            root / "vit",
            "vit",
            PreprocessSpec(
                size=SIZE, resize="squash", interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3
            ),
        ),
        "swin": _export(
            swin,
            root / "swin",
            "swin",
            PreprocessSpec(size=SIZE, resize="squash", interpolation="bicubic", **imagenet),
        ),
        "convnext": _export(
            convnext,
            root / "convnext",
            "convnext",
            PreprocessSpec(size=SIZE, resize="crop", crop_pct=224 / 256, interpolation="bicubic", **imagenet),
        ),
    }


STAGES = {
    "vit": ViTForImageClassification,
    "swin": SwinForImageClassification,
    "convnext": ConvNextForImageClassification,
}


def test_family_stages_match_the_embedded_core(spark, family_models, image_dirs):
    stages = []
    for family, stage_class in STAGES.items():
        stage = stage_class.loadSavedModel(str(family_models[family]), spark)
        spec = Classifier(family_models[family]).spec.preprocess
        assert stage.getSize() == SIZE and stage.getClasses() == list(LABELS)
        assert stage.getResizeMode() == spec.resize and stage.getCropPct() == pytest.approx(spec.crop_pct)
        np.testing.assert_allclose(stage.getImageMean(), spec.mean)
        stages.append(stage.setInputCols(["image_assembler"]).setOutputCol(family).setTopK(3))
    assert [s.getResample() for s in stages] == [2, 3, 3]  # bilinear ViT, bicubic Swin and ConvNeXt

    frame = read_images(spark, str(image_dirs["mixed"]))
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), *stages]).fit(frame)
    result = model.transform(frame)
    for family in STAGES:
        result = prediction_columns(result, family, prefix=f"{family}_")
    rows = {r.path.rsplit("/", 1)[-1]: r for r in result.collect()}
    assert len(rows) == 6  # every non-empty file
    files = sorted(image_dirs["mixed"].iterdir())
    for family in STAGES:
        embedded = {Path(p.path).name: p for p in Classifier(family_models[family]).classify(files, top_k=3)}
        for name, row in rows.items():
            assert row[f"{family}_labels"] == list(embedded[name].labels), (family, name)
            assert row[f"{family}_error"] == embedded[name].error
            np.testing.assert_allclose(row[f"{family}_scores"], embedded[name].scores, atol=1e-5)

    light = LightPipeline(model).fullAnnotateImage(str(image_dirs["good"] / "c_rgba.png"))[0]
    for family in STAGES:
        assert light[family][0].result == rows["c_rgba.png"][f"{family}_label"]


def test_pretrained_finds_an_imported_model_in_the_cache(family_models):
    target = models_root() / "tiny_vit_for_test"
    shutil.copytree(family_models["vit"], target)
    try:
        stage = ViTForImageClassification.pretrained("tiny_vit_for_test")
        assert stage.getModelPath() == str(target)
        assert stage.getResample() == 2 and stage.getClasses() == list(LABELS)
    finally:
        shutil.rmtree(target)
