"""Spark NLP's ``python/test/annotator/cv/clip_for_zero_shot_classification_test.py``, imports changed.

Its candidate labels, its pipeline (``CLIPForZeroShotClassification.pretrained()`` with no name,
``setCandidateLabels``), its three cases. The default CLIP needs a download, so the default name
resolves to a tiny random CLIP (CLIP's tokenizer structure) imported into a private model cache under
the default's catalogue name; the gold standard is transformers' CLIP on the pixels Spark decoded, the
labels encoded as written, as Spark NLP encodes them.
"""

# ruff: noqa: F403, F405
from __future__ import annotations

import pytest
from spark_helpers import tiny_clip_checkpoint
from sparknlp_helpers import ONE_IMAGE, TWO_IMAGES, photo_folder, spark_pixels, transformers_zero_shot_labels

from sparkvision.annotator import *
from sparkvision.base import *

pytest.importorskip("transformers")
pytest.importorskip("torch")
pytest.importorskip("tokenizers")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

LABELS = [
    "a photo of a bird",
    "a photo of a cat",
    "a photo of a dog",
    "a photo of a hen",
    "a photo of a hippo",
    "a photo of a room",
    "a photo of a tractor",
    "a photo of an ostrich",
    "a photo of an ox",
]


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory: pytest.TempPathFactory):
    from sparkvision.importers import import_model

    root = tmp_path_factory.mktemp("clip_sparknlp")
    images_path = str(photo_folder(root / "image")) + "/"
    checkpoint = tiny_clip_checkpoint(root / "tiny-clip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKVISION_HOME", str(root / "home"))
        import_model(checkpoint, "clip_vit_base_patch32")  # the default name's catalogue entry

        data = spark.read.format("image").load(path=images_path)
        image_assembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
        imageClassifier = (
            CLIPForZeroShotClassification.pretrained()
            .setInputCols("image_assembler")
            .setOutputCol("label")
            .setCandidateLabels(LABELS)
        )
        pipeline = Pipeline(stages=[image_assembler, imageClassifier])
        model = pipeline.fit(data)
    gold_standards = transformers_zero_shot_labels(checkpoint, LABELS, spark_pixels(spark, root / "image"))
    return images_path, data, model, gold_standards


def test_clip_for_zero_shot_classification(setup):
    _, data, model, gold_standards = setup
    result = model.transform(data).select("image.origin", "label.result").collect()
    assert len(result) == len(gold_standards)
    assert len(set(gold_standards.values())) > 1  # the photos are told apart
    for row in result:
        file_name = row["origin"].rsplit("/", 1)[-1]
        assert gold_standards[file_name] == row["result"][0], file_name


def test_light_clip_for_zero_shot_classification_one_image(setup):
    images_path, _, model, _ = setup
    light_pipeline = LightPipeline(model)
    annotations_result = light_pipeline.fullAnnotateImage(images_path + ONE_IMAGE)
    assert len(annotations_result) == 1
    for result in annotations_result:
        assert len(result["image_assembler"]) > 0
        assert len(result["label"]) > 0
        assert result["label"][0].result in LABELS


def test_light_clip_for_zero_shot_classification(setup):
    images_path, _, model, _ = setup
    light_pipeline = LightPipeline(model)
    images = [images_path + name for name in TWO_IMAGES]
    annotations_result = light_pipeline.fullAnnotateImage(images)
    assert len(annotations_result) == len(images)
    for result in annotations_result:
        assert len(result["image_assembler"]) > 0
        assert len(result["label"]) > 0
