"""Spark NLP's ``python/test/annotator/cv/swin_for_image_classification_test.py``, imports changed.

``SwinForImageClassification.pretrained()`` with no name, as there: the default name resolves through
the catalogue to a tiny random Swin imported (from a ``save_pretrained`` checkpoint) into a private
model cache under the default's catalogue name, since the real one needs a download. The gold
standard is what transformers predicts with that checkpoint on the pixels Spark decoded.
"""

# ruff: noqa: F403, F405
from __future__ import annotations

import pytest
from sparknlp_helpers import (
    ONE_IMAGE,
    TWO_IMAGES,
    photo_folder,
    spark_pixels,
    tiny_checkpoint,
    transformers_labels,
)

from sparkvision.annotator import *
from sparkvision.base import *

pytest.importorskip("transformers")
pytest.importorskip("torch")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

LABELS = [
    "tabby, tabby cat",
    "espresso",
    "tripod",
    "missile",
    "hippopotamus, hippo, river horse, Hippopotamus amphibius",
]


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory: pytest.TempPathFactory):
    from sparkvision.importers import import_model

    root = tmp_path_factory.mktemp("swin")
    images_path = str(photo_folder(root / "image")) + "/"
    checkpoint = root / "tiny-swin"
    torch_model = tiny_checkpoint("swin", checkpoint, LABELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKVISION_HOME", str(root / "home"))
        import_model(checkpoint, "swin_base_patch4_window7_224")  # the default name's catalogue entry

        data = spark.read.format("image").load(path=images_path)
        image_assembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
        imageClassifier = (
            SwinForImageClassification.pretrained().setInputCols("image_assembler").setOutputCol("class")
        )
        pipeline = Pipeline(stages=[image_assembler, imageClassifier])
        model = pipeline.fit(data)
    gold_standards = transformers_labels(torch_model, checkpoint, spark_pixels(spark, root / "image"))
    return images_path, data, model, gold_standards


def test_swin_for_image_classification(setup):
    _, data, model, gold_standards = setup
    result = model.transform(data).select("image.origin", "class.result").collect()
    assert len(result) == len(gold_standards)
    for row in result:
        file_name = row["origin"].rsplit("/", 1)[-1]
        assert gold_standards[file_name] == row["result"][0], file_name


def test_light_swin_for_image_classification_one_image(setup):
    images_path, _, model, _ = setup
    light_pipeline = LightPipeline(model)
    annotations_result = light_pipeline.fullAnnotateImage(images_path + ONE_IMAGE)
    assert len(annotations_result) == 1
    for result in annotations_result:
        assert len(result["image_assembler"]) > 0
        assert len(result["class"]) > 0
        assert result["class"][0].result in LABELS


def test_light_swin_for_image_classification(setup):
    images_path, _, model, _ = setup
    light_pipeline = LightPipeline(model)
    images = [images_path + name for name in TWO_IMAGES]
    annotations_result = light_pipeline.fullAnnotateImage(images)
    assert len(annotations_result) == len(images)
    for result in annotations_result:
        assert len(result["image_assembler"]) > 0
        assert len(result["class"]) > 0
