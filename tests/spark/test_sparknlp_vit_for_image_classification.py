"""Spark NLP's ``python/test/annotator/cv/vit_for_image_classification_test.py``, imports changed.

The pipeline is built exactly as there (``ImageAssembler`` on ``spark.read.format("image")``,
``ViTForImageClassification.pretrained().setInputCols("image_assembler").setOutputCol("class")``,
``Pipeline(stages=[...])``), then transformed and run through ``LightPipeline`` on one image and on a
list. Spark NLP's default ViT needs a download, so the model given to ``pretrained()`` is our real
offline one, EfficientNet-Lite0 (ImageNet-1k): the asserted labels are real labels of real photos.
"""

# ruff: noqa: F403, F405
from __future__ import annotations

from pathlib import Path

import pytest
from sparknlp_helpers import ONE_IMAGE, TWO_IMAGES, photo_folder

from sparkvision.annotator import *
from sparkvision.base import *

pytestmark = [pytest.mark.spark]

GOLD_STANDARDS = {
    "coffee.jpg": "espresso",
    "camera.png": "tripod",
    "rocket.jpg": "missile",
    "chelsea.jpg": "tiger cat",
}


@pytest.fixture(scope="module")
def images_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(photo_folder(tmp_path_factory.mktemp("vit") / "image")) + "/"


@pytest.fixture(scope="module")
def data(spark, images_path):
    return spark.read.format("image").load(path=images_path)


@pytest.fixture(scope="module")
def model(data):
    image_assembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
    image_classifier = (
        ViTForImageClassification.pretrained("efficientnet_lite0")
        .setInputCols("image_assembler")
        .setOutputCol("class")
    )
    pipeline = Pipeline(stages=[image_assembler, image_classifier])
    return pipeline.fit(data)


def test_vit_for_image_classification(model, data):
    result = model.transform(data).select("image.origin", "class.result").collect()
    assert len(result) == len(GOLD_STANDARDS)
    for row in result:
        file_name = row["origin"].rsplit("/", 1)[-1]
        assert row["result"][0] == GOLD_STANDARDS[file_name], file_name


def test_light_vit_for_image_classification_one_image(model, images_path):
    light_pipeline = LightPipeline(model)
    result = light_pipeline.fullAnnotateImage(images_path + ONE_IMAGE)
    assert len(result) == 1
    image_assembler_result = result[0]["image_assembler"]
    class_result = result[0]["class"]
    assert len(image_assembler_result) > 0 and len(class_result) > 0
    assert class_result[0].result == GOLD_STANDARDS[ONE_IMAGE]


def test_light_vit_for_image_classification(model, images_path):
    light_pipeline = LightPipeline(model)
    images = [images_path + name for name in TWO_IMAGES]
    annotations_result = light_pipeline.fullAnnotateImage(images)
    assert len(annotations_result) == len(images)
    for name, result in zip(TWO_IMAGES, annotations_result):
        assert len(result["image_assembler"]) > 0
        assert len(result["class"]) > 0
        assert Path(result["image_assembler"][0].origin).name == name
    assert annotations_result[0]["class"][0].result == GOLD_STANDARDS[TWO_IMAGES[0]]
