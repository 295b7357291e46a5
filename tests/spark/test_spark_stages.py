"""The stages' contract: Spark NLP's params and defaults, working getters, params that take effect,
and clear errors — before any job runs — for input that cannot work."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from pyspark.ml import Pipeline
from pyspark.sql import functions as F

import sparkvision
import sparkvision.annotator
import sparkvision.base
from sparkvision import Classifier
from sparkvision.annotator import (
    ConvNextForImageClassification,
    EfficientNetForImageClassification,
    ImageClassifierModel,
    SwinForImageClassification,
    ViTForImageClassification,
)
from sparkvision.base import ImageAssembler, prediction_columns, read_images
from sparkvision.errors import ConfigError, ModelImportError, ModelNotFoundError
from sparkvision.preprocess import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.spark

ALL_STAGES = [
    ImageClassifierModel,
    EfficientNetForImageClassification,
    ViTForImageClassification,
    SwinForImageClassification,
    ConvNextForImageClassification,
]


def test_public_modules_export_the_spark_nlp_names():
    assert {"ImageAssembler", "LightPipeline"} <= set(sparkvision.base.__all__)
    assert {
        "EfficientNetForImageClassification",
        "ViTForImageClassification",
        "SwinForImageClassification",
        "ConvNextForImageClassification",
    } <= set(sparkvision.annotator.__all__)


def test_start_returns_a_configured_session(spark):
    again = sparkvision.start()
    assert again.sparkContext is spark.sparkContext  # getOrCreate: the running session
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert spark.sparkContext.getConf().get("spark.pyspark.python") == sys.executable
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.sql.files.openCostInBytes") == str(256 * 1024)


@pytest.mark.parametrize("stage_class", ALL_STAGES)
def test_common_spark_nlp_defaults(stage_class):
    stage = stage_class()
    assert stage.getBatchSize() == 2
    assert stage.getDoResize() is True and stage.getDoNormalize() is True and stage.getDoRescale() is True
    assert stage.getSize() == 224
    assert stage.getRescaleFactor() == pytest.approx(1 / 255)
    assert stage.getTopK() == 5
    assert stage.getInputCols() == ["image_assembler"]
    assert stage.getOutputCol() == "class"
    assert stage.getIncludeEmbeddings() is False


def test_family_defaults_follow_spark_nlp():
    vit, swin, convnext = (
        ViTForImageClassification(),
        SwinForImageClassification(),
        ConvNextForImageClassification(),
    )
    assert (vit.getResample(), vit.getImageMean(), vit.getImageStd()) == (2, [0.5] * 3, [0.5] * 3)
    assert vit.getResizeMode() == "squash"
    assert swin.getResample() == 3 and swin.getResizeMode() == "squash"
    np.testing.assert_allclose(swin.getImageMean(), IMAGENET_MEAN)
    np.testing.assert_allclose(swin.getImageStd(), IMAGENET_STD)
    assert convnext.getResample() == 3 and convnext.getResizeMode() == "crop"
    assert convnext.getCropPct() == pytest.approx(224 / 256)
    np.testing.assert_allclose(convnext.getImageMean(), IMAGENET_MEAN)
    lite = EfficientNetForImageClassification()
    assert (lite.getResample(), lite.getCropPct(), lite.getImageMean()) == (3, 0.875, [0.5] * 3)


def test_loaded_model_sets_every_param_from_its_spec(tiny_model):
    stage = ViTForImageClassification.loadSavedModel(str(tiny_model), None)
    spec = Classifier(tiny_model).spec.preprocess
    assert stage.getSize() == spec.size == 32
    assert stage.getResample() == 3  # bicubic, the model's, not ViT's default bilinear
    assert stage.getCropPct() == spec.crop_pct and stage.getResizeMode() == spec.resize
    np.testing.assert_allclose(stage.getImageMean(), spec.mean)
    np.testing.assert_allclose(stage.getImageStd(), spec.std)
    assert stage.getClasses() == list(Classifier(tiny_model).spec.labels)
    assert stage.getModelPath() == str(tiny_model)


def test_setters_chain_and_explain_params(tiny_model):
    stage = ImageClassifierModel.loadSavedModel(str(tiny_model))
    same = stage.setInputCols("images").setOutputCol("label").setBatchSize(8).setTopK(3).setResample(0)
    assert same is stage
    assert (stage.getInputCols(), stage.getOutputCol(), stage.getBatchSize()) == (["images"], "label", 8)
    assert stage.setInputCols(["x"]).getInputCols() == ["x"]
    text = stage.explainParams()
    for name in ("batchSize", "doResize", "doNormalize", "size", "imageMean", "imageStd", "resample"):
        assert name in text
    for name in ("doRescale", "rescaleFactor", "cropPct", "topK"):
        assert name in text
    copied = stage.copy().setTopK(1)
    assert stage.getTopK() == 3 and copied.getTopK() == 1


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("setResample", 7),
        ("setBatchSize", 0),
        ("setImageMean", [0.5, 0.5]),
        ("setImageStd", [0.5, 0.0, 0.5]),
        ("setCropPct", 0),
        ("setResizeMode", "zoom"),
        ("setTopK", 0),
        ("setSize", -1),
    ],
)
def test_invalid_param_values_are_refused(tiny_model, setter, value):
    stage = ImageClassifierModel.loadSavedModel(str(tiny_model))
    with pytest.raises(ConfigError):
        getattr(stage, setter)(value)


def test_params_changed_after_loading_take_effect(spark, tiny_model, image_dirs):
    frame = ImageAssembler().setInputCol("content").transform(read_images(spark, str(image_dirs["good"])))
    stage = ViTForImageClassification.loadSavedModel(str(tiny_model), spark).setTopK(3)
    before = {r.path: (r.labels, r.scores) for r in prediction_columns(stage.transform(frame)).collect()}
    stage.setResample(0).setResizeMode("squash").setImageMean([0.4, 0.5, 0.6]).setDoNormalize(True)
    after = {r.path: (r.labels, r.scores) for r in prediction_columns(stage.transform(frame)).collect()}

    base = Classifier(tiny_model).spec
    changed = base.with_changes(
        preprocess=dataclasses.replace(
            base.preprocess, interpolation="nearest", resize="squash", mean=(0.4, 0.5, 0.6)
        )
    )
    assert stage.getModelSpec().preprocess == changed.preprocess
    embedded = {
        p.path: p for p in Classifier(tiny_model, changed).classify(image_dirs["good_files"], top_k=3)
    }
    for path, (labels, scores) in after.items():
        expected = embedded[str(image_dirs["good"] / path.rsplit("/", 1)[-1])]
        assert labels == list(expected.labels)
        np.testing.assert_allclose(scores, expected.scores, atol=1e-5)
    assert any(not np.allclose(before[p][1], after[p][1], atol=1e-3) for p in after)


def test_assembler_output_schema_and_text(spark, image_dirs):
    images = spark.read.format("image").load(str(image_dirs["good"]))
    out = ImageAssembler().transform(images.withColumn("prompt", F.lit("a photo")))
    element = dict(out.dtypes)["image_assembler"]
    assert element == (
        "array<struct<annotatorType:string,origin:string,height:int,width:int,nChannels:int,mode:int,"
        "result:binary,metadata:map<string,string>,text:string>>"
    )
    assert out.schema["image_assembler"].metadata == {"annotatorType": "image"}
    [first] = (
        ImageAssembler()
        .setTextCol("prompt")
        .transform(images.withColumn("prompt", F.lit("a photo")))
        .where(F.col("image.origin").endswith("c_rgba.png"))
        .select("image_assembler")
        .first()[0]
    )
    assert (first.annotatorType, first.text, first.mode, first.nChannels) == ("image", "a photo", 24, 4)
    assert (first.width, first.height) == (192, 160)

    files = read_images(spark, str(image_dirs["good"]))
    [encoded] = ImageAssembler().setInputCol("content").transform(files).select("image_assembler").first()[0]
    assert encoded.metadata == {"encoding": "file"}
    assert encoded.origin.startswith("file:") and encoded.height == -1
    assert bytes(encoded.result) == (image_dirs["good"] / encoded.origin.rsplit("/", 1)[-1]).read_bytes()


def test_assembler_refuses_columns_that_are_not_images(spark):
    frame = spark.range(3).withColumn("name", F.lit("x"))
    with pytest.raises(ConfigError, match=r"column 'name' is string, not an image.*binaryFile"):
        ImageAssembler().setInputCol("name").transform(frame)
    with pytest.raises(ConfigError, match=r"column 'image' not found \(columns: id, name\)"):
        ImageAssembler().transform(frame)
    with pytest.raises(ConfigError, match="output column 'name' already exists"):
        ImageAssembler().setInputCol("id").setOutputCol("name").transform(frame)
    with pytest.raises(ConfigError, match="text column 'nope' not found"):
        ImageAssembler().setInputCol("content").setTextCol("nope").transform(
            frame.withColumn("content", F.lit(b"x"))
        )


def test_classifier_refuses_bad_wiring_before_any_job(spark, tiny_model, image_dirs):
    stage = ImageClassifierModel.loadSavedModel(str(tiny_model))
    files = read_images(spark, str(image_dirs["good"]))
    with pytest.raises(ConfigError, match=r"not an image annotation column.*ImageAssembler"):
        stage.setInputCols(["content"]).transform(files)
    assembled = ImageAssembler().setInputCol("content").transform(files)
    with pytest.raises(ConfigError, match="input column 'missing' not found"):
        stage.setInputCols(["missing"]).transform(assembled)
    with pytest.raises(ConfigError, match="exactly one"):
        stage.setInputCols(["image_assembler", "path"]).transform(assembled)
    stage.setInputCols(["image_assembler"])
    with pytest.raises(ConfigError, match="output column 'path' already exists"):
        stage.setOutputCol("path").transform(assembled)
    stage.setOutputCol("class")
    with pytest.raises(ConfigError, match="topK must be between 1 and 6"):
        stage.setTopK(7).transform(assembled)
    stage.setTopK(2)
    with pytest.raises(ConfigError, match="takes 32×32 inputs; size=64"):
        stage.setSize(64).transform(assembled)
    with pytest.raises(ConfigError, match="has no model"):
        ViTForImageClassification().transform(assembled)


def test_pretrained_names_and_errors(lite0_stage):
    assert lite0_stage.getClasses()[0].startswith("tench")
    assert ImageClassifierModel.pretrained().getModelPath() == lite0_stage.getModelPath()
    with pytest.raises(ModelNotFoundError, match=r"Available models: .*efficientnet_lite0"):
        EfficientNetForImageClassification.pretrained("efficientnet_lite9")
    with pytest.raises(ConfigError, match="remote_loc"):
        EfficientNetForImageClassification.pretrained(remote_loc="s3://bucket/models")
    with pytest.raises(ConfigError, match="lang"):
        EfficientNetForImageClassification.pretrained(lang="de")


def test_load_saved_model_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ViTForImageClassification.loadSavedModel(str(tmp_path / "nope"), None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelImportError, match="not a sparkvision model directory"):
        ViTForImageClassification.loadSavedModel(str(tmp_path), None)


def test_pipeline_of_two_classifiers_on_one_assembler(spark, tiny_model, lite0_stage, image_dirs):
    """Stages compose: two models, one pass over the images, each column its own model's answer."""
    tiny = ImageClassifierModel.loadSavedModel(str(tiny_model)).setOutputCol("tiny").setTopK(1)
    lite = lite0_stage.copy().setOutputCol("lite").setTopK(1)
    frame = read_images(spark, str(image_dirs["good"] / "a_chelsea.jpg"))
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), tiny, lite]).fit(frame)
    row = model.transform(frame).first()
    path = str(image_dirs["good"] / "a_chelsea.jpg")
    assert row["tiny"][0].result == next(Classifier(tiny_model).classify(path, top_k=1)).label
    assert row["lite"][0].result == next(Classifier(lite0_stage.getModelPath()).classify(path, top_k=1)).label
