"""``CLIPForZeroShotClassification`` on ``local[2]``: a tiny random CLIP (real CLIP tokenizer structure)
imported with ``import_model``, scored by Spark exactly as the embedded ``Classifier`` scores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import Pipeline, PipelineModel
from spark_helpers import PRE_CLIP, tiny_clip_checkpoint

import sparkvision
from sparkvision import Classifier
from sparkvision.annotator import CLIPForZeroShotClassification, ViTForImageClassification
from sparkvision.base import ImageAssembler, LightPipeline, read_images
from sparkvision.errors import ConfigError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

LABELS = ["cat", "rocket", "cup of coffee"]


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("clip") / "tiny_clip_checkpoint")


@pytest.fixture(scope="module")
def clip_home(clip_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A private model cache holding the tiny CLIP under the catalogue's CLIP name."""
    from sparkvision.importers import import_model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKVISION_HOME", str(tmp_path_factory.mktemp("clip_home")))
        model_dir = import_model(clip_checkpoint, "clip_vit_base_patch32")
        yield model_dir


@pytest.fixture(scope="module")
def clip_stage(clip_home: Path) -> CLIPForZeroShotClassification:
    stage = CLIPForZeroShotClassification.pretrained(name="zero_shot_classifier_clip_vit_base_patch32")
    return stage.setPromptTemplate("a photo of a {}")  # the embedded Classifier's prompt, for comparisons


def _embedded(model_dir: Path, files: list[Path], labels: list[str], top_k: int) -> dict[str, Any]:
    predictions = sparkvision.load(model_dir).classify(
        [str(f) for f in files], candidate_labels=labels, top_k=top_k
    )
    return {Path(str(p.path)).name: p for p in predictions}


def _assert_matches(annotation: Any, prediction: Any) -> None:
    meta = annotation.metadata
    assert prediction.error is None and "error" not in meta
    assert annotation.result == prediction.labels[0]
    assert int(meta["top_k"]) == len(prediction.labels)
    assert float(meta["confidence"]) == pytest.approx(prediction.scores[0], abs=1e-6)
    for rank, (label, score) in enumerate(zip(prediction.labels, prediction.scores), start=1):
        assert meta[f"label_{rank}"] == label
        assert float(meta[label]) == pytest.approx(score, abs=1e-6)


def test_defaults_params_and_label_validation(clip_stage: CLIPForZeroShotClassification, clip_home: Path):
    bare = CLIPForZeroShotClassification()
    assert bare.getCandidateLabels() == [] and bare.getTopK() == 5 and bare.getBatchSize() == 2
    assert bare.getResample() == 2 and bare.getResizeMode() == "crop"  # Spark NLP's default: bilinear
    assert bare.getImageMean() == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    stage = clip_stage.copy()
    assert stage.getModelPath() == str(clip_home) and stage.getClasses() == []
    assert stage.setCandidateLabels(LABELS) is stage
    assert stage.getCandidateLabels() == LABELS == stage.getClasses()
    assert stage.setCandidateLabels(" a cat , a dog ").getCandidateLabels() == ["a cat", "a dog"]
    with pytest.raises(ConfigError, match="distinct"):
        stage.setCandidateLabels(["cat", "cat"])
    with pytest.raises(ConfigError, match="at least one"):
        stage.setCandidateLabels([])
    assert "candidateLabels" in stage.explainParams()
    built = CLIPForZeroShotClassification(candidateLabels=["x", "y"], topK=1, outputCol="zs")
    assert (built.getCandidateLabels(), built.getTopK(), built.getOutputCol()) == (["x", "y"], 1, "zs")


def test_wrong_kind_of_model_is_refused(clip_home: Path, tiny_model: Path):
    with pytest.raises(ConfigError, match="zero-shot"):
        CLIPForZeroShotClassification.loadSavedModel(str(tiny_model))
    with pytest.raises(ConfigError, match=r"needs a classification model.*CLIPForZeroShotClassification"):
        ViTForImageClassification.loadSavedModel(str(clip_home))


def test_transform_without_labels_or_with_too_large_top_k_is_refused(spark, clip_stage, image_dirs):
    frame = ImageAssembler().setInputCol("content").transform(read_images(spark, str(image_dirs["good"])))
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("clip-refusals", "must stay empty")
    try:
        with pytest.raises(ConfigError, match=r"needs candidate labels.*setCandidateLabels"):
            clip_stage.copy().transform(frame)
        with pytest.raises(ConfigError, match="topK must be between 1 and 3"):
            clip_stage.copy().setCandidateLabels(LABELS).setTopK(4).transform(frame)
        assert tracker.getJobIdsForGroup("clip-refusals") == []
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)


def test_scores_equal_the_embedded_classifier(spark, clip_stage, clip_home, image_dirs):
    """binaryFile rows through local[2]: every label and score equals Classifier.classify's; the
    default topK (5) is lowered to the 3 candidate labels."""
    frame = read_images(spark, str(image_dirs["good"])).repartition(2)
    stage = clip_stage.copy().setInputCols(["image_assembler"]).setOutputCol("zs").setCandidateLabels(LABELS)
    result = stage.transform(ImageAssembler().setInputCol("content").transform(frame))
    rows = {Path(r.path).name: r.zs[0] for r in result.select("path", "zs").collect()}
    embedded = _embedded(clip_home, image_dirs["good_files"], LABELS, top_k=3)
    assert set(rows) == set(embedded) and len(rows) == 4
    for name, prediction in embedded.items():
        _assert_matches(rows[name], prediction)
    # The scores tell the photos apart (a constant answer would also "match" a broken comparison).
    assert len({tuple(p.scores) for p in embedded.values()}) == 4
    assert max(p.scores[0] - p.scores[-1] for p in embedded.values()) > 0.2

    # Another label set and topK on the same stage: a param changed after loading takes effect.
    other = ["rocket", "cat"]
    stage.setCandidateLabels(other).setTopK(1)
    rows = {Path(r.path).name: r.zs[0] for r in stage.transform(
        ImageAssembler().setInputCol("content").transform(frame)).select("path", "zs").collect()}  # fmt: skip
    for name, prediction in _embedded(clip_home, image_dirs["good_files"], other, top_k=1).items():
        _assert_matches(rows[name], prediction)


def test_image_source_rows(spark, clip_stage, clip_home, image_dirs):
    """Spark's image source (raw BGR/BGRA/gray pixels) works too; JPEG decoders differ slightly."""
    frame = spark.read.format("image").option("dropInvalid", True).load(str(image_dirs["good"]))
    stage = clip_stage.copy().setCandidateLabels(LABELS)
    result = Pipeline().setStages([ImageAssembler(), stage]).fit(frame).transform(frame)
    rows = {Path(r.image.origin).name: r["class"][0] for r in result.select("image", "class").collect()}
    embedded = _embedded(clip_home, image_dirs["good_files"], LABELS, top_k=3)
    for name, prediction in embedded.items():
        meta = rows[name].metadata
        assert "error" not in meta
        for label, score in zip(prediction.labels, prediction.scores):
            assert float(meta[label]) == pytest.approx(score, abs=0.02)


def test_save_load_round_trip_and_light_pipeline(spark, clip_stage, clip_home, image_dirs, tmp_path):
    stage = clip_stage.copy().setOutputCol("zs").setCandidateLabels(LABELS).setTopK(2)
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    loaded_stage = loaded.stages[-1]
    assert isinstance(loaded_stage, CLIPForZeroShotClassification)
    assert loaded_stage.getCandidateLabels() == LABELS and loaded_stage.getTopK() == 2
    assert loaded_stage.getModelPath() != str(clip_home)  # the saved copy of the model

    frame = read_images(spark, str(image_dirs["good"]))
    rows = {Path(r.path).name: r.zs[0] for r in loaded.transform(frame).select("path", "zs").collect()}
    embedded = _embedded(clip_home, image_dirs["good_files"], LABELS, top_k=2)
    for name, prediction in embedded.items():
        _assert_matches(rows[name], prediction)

    files = [str(f) for f in image_dirs["good_files"]]
    light = LightPipeline(loaded).fullAnnotateImage([*files, str(tmp_path / "missing.jpg")])
    for path, result in zip(files, light):
        _assert_matches(result["zs"][0], embedded[Path(path).name])
    assert "not found" in light[-1]["zs"][0].metadata["error"]


def test_load_saved_model_imports_a_clip_checkpoint_folder(clip_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "home"))
    stage = CLIPForZeroShotClassification.loadSavedModel(str(clip_checkpoint), None)
    model_dir = Path(stage.getModelPath())
    assert model_dir.is_relative_to(tmp_path / "home") and model_dir.name == clip_checkpoint.name
    assert Classifier(model_dir).spec.task == "zero-shot"
    assert (stage.getResample(), stage.getResizeMode(), stage.getCropPct()) == (3, "crop", 1.0)
    assert stage.getImageStd() == pytest.approx(PRE_CLIP["image_std"])
