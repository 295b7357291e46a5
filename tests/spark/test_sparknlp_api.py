"""The Spark NLP drop-in, checked against Spark NLP's own Python API as written down here.

Names, signatures and defaults below are Spark NLP's (``python/sparknlp/annotator/cv/*.py``,
``base/image_assembler.py``, ``base/light_pipeline.py``, ``common/properties.py``,
``common/annotator_properties.py``, ``internal/params_getters_setters.py`` and ``__init__.py``), read
from its repository: every one must exist on our classes with the same parameter names, kinds and
defaults (ours may add trailing optional parameters, or a default where Spark NLP has none). Then the
behaviour behind them: star imports, ``start()``'s arguments, the annotation schema and values,
``LightPipeline`` on folders and bad files, ``ImageAssembler.loadImagesAsBytes``.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import types as T

import sparkvision
from sparkvision.annotator import (
    CLIPForZeroShotClassification,
    ConvNextForImageClassification,
    ImageClassifierModel,
    SwinForImageClassification,
    VisionEncoderDecoderForImageCaptioning,
    ViTForImageClassification,
)
from sparkvision.base import ImageAssembler, LightPipeline
from sparkvision.errors import ConfigError

pytestmark = [pytest.mark.spark]

REQUIRED = object()  # a parameter without a default
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

# -- Spark NLP's public API, written down ------------------------------------------------------------
_ANNOTATOR_METHODS: dict[str, list[tuple[str, Any]]] = {
    # AnnotatorProperties, AnnotatorModel, ParamsGettersSetters
    "setInputCols": [("*value", REQUIRED)],
    "inputColsValidation": [("value", REQUIRED)],
    "getInputCols": [],
    "setOutputCol": [("value", REQUIRED)],
    "getOutputCol": [],
    "setLazyAnnotator": [("value", REQUIRED)],
    "getLazyAnnotator": [],
    "getParamValue": [("paramName", REQUIRED)],
    "setParamValue": [("paramName", REQUIRED)],
    # HasBatchedAnnotateImage, HasImageFeatureProperties, HasEngine
    "setBatchSize": [("v", REQUIRED)],
    "getBatchSize": [],
    "setDoResize": [("value", REQUIRED)],
    "setDoNormalize": [("value", REQUIRED)],
    "setFeatureExtractorType": [("value", REQUIRED)],
    "setImageStd": [("value", REQUIRED)],
    "setImageMean": [("value", REQUIRED)],
    "setResample": [("value", REQUIRED)],
    "setSize": [("value", REQUIRED)],
    "getEngine": [],
    "loadSavedModel": [("folder", REQUIRED), ("spark_session", REQUIRED)],
}
_ANNOTATOR_PARAMS = ["inputCols", "outputCol", "lazyAnnotator", "batchSize", "doResize", "doNormalize",
                     "featureExtractorType", "imageMean", "imageStd", "resample", "size", "engine",
                     "configProtoBytes"]  # fmt: skip
_RESCALE_METHODS = {"setDoRescale": [("value", REQUIRED)], "setRescaleFactor": [("value", REQUIRED)]}
_IMAGE_DEFAULTS = {"batchSize": 2, "doNormalize": True, "doRescale": True, "doResize": True, "size": 224,
                   "rescaleFactor": 1 / 255.0, "lazyAnnotator": False}  # fmt: skip

# HasGeneratorProperties (common/properties.py)
_GENERATOR_PARAMS = ["task", "minOutputLength", "maxOutputLength", "doSample", "temperature", "topK", "topP",
                     "repetitionPenalty", "noRepeatNgramSize", "beamSize", "nReturnSequences"]  # fmt: skip
_GENERATOR_METHODS = {"set" + p[0].upper() + p[1:]: [("value", REQUIRED)] for p in _GENERATOR_PARAMS}


def _pretrained(name: str, engine: bool) -> list[tuple[str, Any]]:
    return [("name", name), ("lang", "en"), ("remote_loc", None)] + ([("engine", "onnx")] if engine else [])


SPARK_NLP: dict[type, dict[str, Any]] = {
    ViTForImageClassification: {
        "methods": {**_ANNOTATOR_METHODS, "getClasses": [], "setConfigProtoBytes": [("b", REQUIRED)],
                    "pretrained": _pretrained("image_classifier_vit_base_patch16_224", engine=False)},
        "params": _ANNOTATOR_PARAMS,
        "defaults": {"batchSize": 2, "lazyAnnotator": False},
        "attrs": {"name": "ViTForImageClassification", "inputAnnotatorTypes": ["image"],
                  "outputAnnotatorType": "category"},
    },
    SwinForImageClassification: {
        "methods": {**_ANNOTATOR_METHODS, **_RESCALE_METHODS, "getClasses": [],
                    "setConfigProtoBytes": [("b", REQUIRED)],
                    "pretrained": _pretrained("image_classifier_swin_base_patch4_window7_224", engine=True)},
        "params": [*_ANNOTATOR_PARAMS, "doRescale", "rescaleFactor"],
        "defaults": {**_IMAGE_DEFAULTS, "imageMean": IMAGENET_MEAN, "imageStd": IMAGENET_STD, "resample": 3},
        "attrs": {"name": "SwinForImageClassification", "inputAnnotatorTypes": ["image"],
                  "outputAnnotatorType": "category"},
    },
    ConvNextForImageClassification: {
        "methods": {**_ANNOTATOR_METHODS, **_RESCALE_METHODS, "setCropPct": [("value", REQUIRED)],
                    "getClasses": [], "setConfigProtoBytes": [("b", REQUIRED)],
                    "pretrained": _pretrained("image_classifier_convnext_tiny_224_local", engine=False)},
        "params": [*_ANNOTATOR_PARAMS, "doRescale", "rescaleFactor", "cropPct"],
        "defaults": {**_IMAGE_DEFAULTS, "imageMean": IMAGENET_MEAN, "imageStd": IMAGENET_STD, "resample": 3,
                     "cropPct": 224 / 256.0},
        "attrs": {"name": "ConvNextForImageClassification", "inputAnnotatorTypes": ["image"],
                  "outputAnnotatorType": "category"},
    },
    CLIPForZeroShotClassification: {
        "methods": {**_ANNOTATOR_METHODS, **_RESCALE_METHODS, "getCandidateLabels": [],
                    "setCandidateLabels": [("v", REQUIRED)], "setContradictionIdParam": [("v", REQUIRED)],
                    "setEntailmentIdParam": [("v", REQUIRED)],
                    "pretrained": _pretrained("zero_shot_classifier_clip_vit_base_patch32", engine=True)},
        "params": [*_ANNOTATOR_PARAMS, "doRescale", "rescaleFactor", "candidateLabels", "contradictionIdParam",
                   "entailmentIdParam"],
        "defaults": {**_IMAGE_DEFAULTS, "imageMean": CLIP_MEAN, "imageStd": CLIP_STD, "resample": 2},
        "attrs": {"name": "CLIPForZeroShotClassification", "inputAnnotatorTypes": ["image"],
                  "outputAnnotatorType": "category"},
    },
    VisionEncoderDecoderForImageCaptioning: {
        "methods": {**_ANNOTATOR_METHODS, **_RESCALE_METHODS, **_GENERATOR_METHODS,
                    "setConfigProtoBytes": [("b", REQUIRED)],
                    "pretrained": _pretrained("image_captioning_vit_gpt2", engine=True)},
        "params": [*_ANNOTATOR_PARAMS, "doRescale", "rescaleFactor", *_GENERATOR_PARAMS],
        "defaults": {**_IMAGE_DEFAULTS, "imageMean": [0.5, 0.5, 0.5], "imageStd": [0.5, 0.5, 0.5], "resample": 2,
                     "beamSize": 1, "doSample": True, "maxOutputLength": 50, "minOutputLength": 0,
                     "nReturnSequences": 1, "noRepeatNgramSize": 0, "repetitionPenalty": 1.0, "temperature": 1.0,
                     "topK": 50, "topP": 1.0},
        "attrs": {"name": "VisionEncoderDecoderForImageCaptioning", "inputAnnotatorTypes": ["image"],
                  "outputAnnotatorType": "document"},
    },
    ImageAssembler: {
        "methods": {"setParams": [], "setInputCol": [("value", REQUIRED)], "setOutputCol": [("value", REQUIRED)],
                    "getOutputCol": [], "setTextCol": [("value", REQUIRED)],
                    "loadImagesAsBytes": [("spark", REQUIRED), ("path", REQUIRED)]},
        "params": ["inputCol", "textCol", "outputCol"],
        "defaults": {"outputCol": "image_assembler", "inputCol": "image"},
        "attrs": {"name": "ImageAssembler", "outputAnnotatorType": "image"},
    },
    LightPipeline: {
        "methods": {"__init__": [("pipelineModel", REQUIRED), ("parse_embeddings", False)],
                    "fullAnnotate": [("target", REQUIRED), ("optional_target", "")],
                    "fullAnnotateImage": [("path_to_image", REQUIRED), ("text", None)],
                    "annotate": [("target", REQUIRED), ("optional_target", "")],
                    "transform": [("dataframe", REQUIRED)], "setIgnoreUnsupported": [("value", REQUIRED)],
                    "getIgnoreUnsupported": []},
    },
}  # fmt: skip
SPARK_NLP_START = [("gpu", False), ("apple_silicon", False), ("aarch64", False), ("memory", "16G"),
                   ("cache_folder", ""), ("log_folder", ""), ("cluster_tmp_dir", ""), ("params", None),
                   ("real_time_output", False), ("output_level", 1)]  # fmt: skip


def _ours(function: Any) -> list[tuple[str, Any, Any]]:
    return [
        ("*" + p.name if p.kind is p.VAR_POSITIONAL else p.name, p.default, p.kind)
        for p in inspect.signature(function).parameters.values()
        if p.name not in ("self", "cls") and p.kind is not p.VAR_KEYWORD
    ]


def _check_signature(where: str, function: Any, expected: list[tuple[str, Any]]) -> None:
    ours = _ours(function)
    assert [name for name, _, _ in ours[: len(expected)]] == [name for name, _ in expected], where
    for (name, default), (_, our_default, _) in zip(expected, ours):
        if default is not REQUIRED:
            assert our_default == default, (
                f"{where}: {name} defaults to {our_default!r}, Spark NLP {default!r}"
            )
    for name, default, kind in ours[len(expected) :]:  # our extras never break Spark NLP's calls
        assert default is not inspect.Parameter.empty or kind is inspect.Parameter.KEYWORD_ONLY, (where, name)


@pytest.mark.parametrize("cls", list(SPARK_NLP), ids=lambda c: c.__name__)
def test_spark_nlp_public_names_signatures_and_defaults(cls):
    api = SPARK_NLP[cls]
    for method, expected in api["methods"].items():
        assert callable(getattr(cls, method, None)), f"{cls.__name__}.{method} is missing"
        _check_signature(f"{cls.__name__}.{method}", getattr(cls, method), expected)
    if "params" not in api:
        return
    stage = cls()
    for param in api["params"]:
        assert stage.hasParam(param), f"{cls.__name__} has no param {param}"
        getter = "get" + param[0].upper() + param[1:]
        assert callable(getattr(stage, getter, None)), f"{cls.__name__}.{getter} (Spark NLP generates it)"
        getattr(stage, getter)()  # works on a bare stage (Spark NLP's generated getters often fail)
    for param, default in api["defaults"].items():
        assert stage.getOrDefault(param) == pytest.approx(default), f"{cls.__name__}.{param}"
    for attr, value in api["attrs"].items():
        assert getattr(cls, attr) == value, f"{cls.__name__}.{attr}"


def test_meaningless_params_are_accepted_and_kept():
    stage = (
        ViTForImageClassification().setConfigProtoBytes([1, 2]).setFeatureExtractorType("ViTFeatureExtractor")
    )
    stage.setLazyAnnotator(True)
    assert stage.getConfigProtoBytes() == [1, 2] and stage.getEngine() == "onnx" and stage.getLazyAnnotator()
    assert stage.getParamValue("batchSize")() == 2  # Spark NLP returns a getter function
    assert stage.setParamValue("batchSize")(8) is stage and stage.getBatchSize() == 8
    with pytest.raises(ConfigError, match="batchSize must be at least 1"):
        stage.setParamValue("batchSize")(0)
    with pytest.raises(ConfigError, match="reads exactly one"):
        stage.setInputCols("image_assembler", "document")
    assert stage.setInputCols("image_assembler").getInputCols() == ["image_assembler"]


def test_preprocessing_setters_are_checked_by_the_core_spec():
    stage = SwinForImageClassification()
    with pytest.raises(ConfigError, match="std must not contain zeros"):
        stage.setImageStd([0.2, 0.0, 0.2])
    with pytest.raises(ConfigError, match="crop_pct must be in"):
        ConvNextForImageClassification().setCropPct(1.5)
    with pytest.raises(ConfigError, match="resample must be a Pillow filter code"):
        stage.setResample(7)
    with pytest.raises(ConfigError, match="size must be a positive integer"):
        stage.setSize(0)
    assert stage.setImageMean([0.5]).getImageMean() == [0.5, 0.5, 0.5]  # the spec's one-value form


def test_star_imports_give_what_spark_nlp_tests_use():
    namespace: dict[str, Any] = {}
    exec("from sparkvision.base import *\nfrom sparkvision.annotator import *", namespace)
    for name in ("Pipeline", "PipelineModel", "LightPipeline", "ImageAssembler", "ViTForImageClassification",
                 "SwinForImageClassification", "ConvNextForImageClassification",
                 "CLIPForZeroShotClassification"):  # fmt: skip
        assert name in namespace, name
    assert sparkvision.version() == sparkvision.__version__


def test_start_takes_spark_nlp_arguments(spark, monkeypatch, tmp_path):
    ours = {
        name: p.default for name, p in inspect.signature(sparkvision.spark.session.start).parameters.items()
    }
    for name, default in SPARK_NLP_START:
        assert name in ours, name
        if name not in ("memory",):  # ours defaults to 4g (the driver of a laptop), Spark NLP's to 16G
            assert ours[name] == default, name
    with pytest.warns(UserWarning, match=r"^sparkvision\.start\(\): gpu is ignored"):
        assert sparkvision.start(True) is spark  # sparknlp.start(True): gpu, positionally
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "unused"))
        session = sparkvision.start(
            "local[2]", gpu=False, apple_silicon=False, output_level=1, cache_folder=str(tmp_path / "cache"),
            params={"spark.sql.shuffle.partitions": "2"},
        )  # fmt: skip
    assert session is spark
    assert not [w for w in caught if str(w.message).startswith("sparkvision.start()")]
    assert os.environ["SPARKVISION_HOME"] == str(tmp_path / "cache")
    with pytest.raises(TypeError, match="params must be a dict"):
        sparkvision.start(params=[("spark.executor.memory", "8g")])


# -- annotations ---------------------------------------------------------------------------------------
SPARK_NLP_ANNOTATION = T.StructType(
    [
        T.StructField("annotatorType", T.StringType(), True),
        T.StructField("begin", T.IntegerType(), False),
        T.StructField("end", T.IntegerType(), False),
        T.StructField("result", T.StringType(), True),
        T.StructField("metadata", T.MapType(T.StringType(), T.StringType(), True), True),
        T.StructField("embeddings", T.ArrayType(T.FloatType(), False), True),
    ]
)  # fmt: skip  (Spark NLP's Annotation.dataType; the column is ArrayType(dataType, true))


def test_annotation_schema_and_values_are_spark_nlps(spark, tiny_model, image_dirs):
    frame = spark.read.format("image").load(str(image_dirs["good"]))
    stage = ImageClassifierModel.loadSavedModel(str(tiny_model)).setInputCols("image_assembler").setTopK(2)
    result = Pipeline(stages=[ImageAssembler(), stage]).fit(frame).transform(frame)
    assert result.schema["class"].dataType == T.ArrayType(SPARK_NLP_ANNOTATION, True)
    rows = result.select("image.origin", "image.height", "image.width", "class").collect()
    assert len(rows) == 4
    for row in rows:
        [annotation] = row["class"]
        assert annotation.begin == 0 and annotation.end == len(annotation.result) - 1 > 0
        meta = annotation.metadata
        assert meta["image"] == "0" and meta["origin"] == row.origin
        assert (meta["height"], meta["width"]) == (str(row.height), str(row.width))
        assert meta["label_1"] == annotation.result and float(meta["confidence"]) > float(meta["score_2"])


# -- LightPipeline --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def light_model(spark, tiny_model):
    stage = ImageClassifierModel.loadSavedModel(str(tiny_model)).setInputCols("image_assembler").setTopK(2)
    return Pipeline(stages=[ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))


def test_light_pipeline_folders_lists_and_real_image_metadata(spark, light_model, image_dirs):
    folder = image_dirs["good"]
    light = LightPipeline(light_model)
    by_folder = light.fullAnnotateImage(str(folder))
    files = sorted(str(p) for p in folder.iterdir())
    by_list = light.fullAnnotate(files)
    assert [r["image_assembler"][0].origin for r in by_folder] == files  # the folder's images, by name
    assert [r["class"][0].result for r in by_folder] == [r["class"][0].result for r in by_list]
    assert light.annotate(str(folder)) == [light.annotate(f) for f in files]

    spark_images = {
        Path(r.origin).name: (r.height, r.width, r.nChannels, r.mode)
        for r in spark.read.format("image").load(str(folder)).select("image.*").collect()
    }
    for result in by_folder:
        image = result["image_assembler"][0]
        # Spark's image source and Spark NLP report the decoded size, channels and OpenCV mode
        assert (image.height, image.width, image.nChannels, image.mode) == spark_images[
            Path(image.origin).name
        ]
        assert result["class"][0].metadata["height"] == str(image.height)
    assert {spark_images[n][2:] for n in ("c_rgba.png", "d_gray.png", "a_chelsea.jpg")} == {
        (4, 24),
        (1, 0),
        (3, 16),
    }


def test_light_pipeline_bad_entries_and_unsupported_stages(spark, light_model, image_dirs, tmp_path):
    light = LightPipeline(light_model)
    good = str(image_dirs["good"] / "a_chelsea.jpg")
    results = light.fullAnnotateImage([str(tmp_path / "missing.jpg"), str(image_dirs["corrupt"]), good])
    assert "file not found" in results[0]["class"][0].metadata["error"]
    assert "file not found" in results[0]["image_assembler"][0].metadata["error"]
    assert results[1]["class"][0].metadata.get("error") and results[1]["image_assembler"][0].height == -1
    assert (
        results[2]["class"][0].result and "error" not in results[2]["class"][0].metadata
    )  # the rest goes on

    with_sql = Pipeline(stages=[*light_model.stages, SQLTransformer(statement="SELECT * FROM __THIS__")])
    unsupported = LightPipeline(with_sql.fit(spark.range(1)))
    assert unsupported.getIgnoreUnsupported() is False
    with pytest.raises(ConfigError, match=r"SQLTransformer.*setIgnoreUnsupported"):
        unsupported.annotate(good)
    assert unsupported.setIgnoreUnsupported(True).annotate(good)["class"] == light.annotate(good)["class"]


def test_load_images_as_bytes_rows_are_decoded_as_files(spark, light_model, image_dirs):
    frame = ImageAssembler.loadImagesAsBytes(spark, str(image_dirs["good"]))
    stage = light_model.stages[1].copy()
    result = stage.transform(ImageAssembler().transform(frame)).select("image.origin", "class").collect()
    light = {
        Path(r["image_assembler"][0].origin).name: r["class"][0]
        for r in LightPipeline(light_model).fullAnnotateImage(str(image_dirs["good"]))
    }
    assert len(result) == 4 and {Path(r.origin).name for r in result} == set(light)
    for row in result:
        [annotation] = row["class"]
        expected = light[Path(row.origin).name]
        assert annotation.result == expected.result  # decoded from the file bytes, as binaryFile rows are
        confidence = float(expected.metadata["confidence"])
        assert float(annotation.metadata["confidence"]) == pytest.approx(confidence, abs=1e-5)


# -- pretrained(): Spark NLP Models Hub names ------------------------------------------------------------
def _spark_nlp_catalogue() -> list[dict[str, Any]]:
    import json
    from importlib import resources

    data = json.loads(
        resources.files("sparkvision").joinpath("data/catalogue.json").read_text(encoding="utf-8")
    )
    return [m for m in data["models"] if "_spark_nlp" in m]


STAGE_FOR_TASK = {
    "classification": ViTForImageClassification,
    "zero-shot": CLIPForZeroShotClassification,
    "captioning": VisionEncoderDecoderForImageCaptioning,
}


def test_pretrained_knows_spark_nlp_models_hub_names(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("SPARKVISION_OFFLINE", "1")
    mapped = _spark_nlp_catalogue()
    assert len(mapped) >= 33
    assert set(STAGE_FOR_TASK) == {m["task"] for m in mapped}  # every stage kind has some
    for model in mapped:
        name, repo = model["_spark_nlp"]["name"], model["builder_args"]["repo_id"]
        assert model["_spark_nlp"]["page"].startswith("https://sparknlp.org/"), name  # the cited source
        # Offline the build cannot run: the error names the Hugging Face origin and the import command.
        with pytest.raises(sparkvision.ModelNotFoundError) as caught:
            STAGE_FOR_TASK[model["task"]].pretrained(name, "en")
        message = str(caught.value)
        assert repo in message and "sparkvision import" in message, name


def test_pretrained_lang_remote_loc_engine_and_unknown_names(tmp_path, monkeypatch, tiny_model):
    import shutil

    from sparkvision.models.store import cached_model_dir

    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "home"))
    shutil.copytree(
        tiny_model, cached_model_dir("image_classifier_vit_my_own")
    )  # a copy imported under that name
    stage = ViTForImageClassification.pretrained("image_classifier_vit_my_own", "en", "public/models")
    assert stage.getClasses()[0] == "tabby"
    assert (
        SwinForImageClassification.pretrained("image_classifier_vit_my_own", engine="openvino").getEngine()
        == "onnx"
    )
    with pytest.raises(ConfigError, match="lang='en'"):
        ViTForImageClassification.pretrained("image_classifier_vit_my_own", "de")
    with pytest.raises(ConfigError, match=r"remote_loc='clinical/models'.*loadSavedModel"):
        ViTForImageClassification.pretrained("image_classifier_vit_my_own", "en", "clinical/models")
    with pytest.raises(
        sparkvision.ModelNotFoundError, match=r"unknown model.*sparkvision import FOLDER --name"
    ):
        ViTForImageClassification.pretrained("image_classifier_vit_nobody_has_this")
