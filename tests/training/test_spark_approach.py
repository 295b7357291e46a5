"""``ImageClassifierApproach``: fitting in a Spark pipeline, the MLlib head, persistence, bad input.

The data are the real photos of the faces data set (face / background / texture; validation images
from photos no training image came from), smaller than in the core test to keep the Spark jobs short.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
pytest.importorskip("pyspark")
pytest.importorskip("pandas")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)

from photo_dataset import build_faces_dataset
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F

from sparkvision import Classifier, ConfigError
from sparkvision.models.store import models_root
from sparkvision.spark import ImageAssembler, ImageClassifierModel, prediction_columns
from sparkvision.spark.approach import ImageClassifierApproach, read_labelled_images

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    import sparkvision

    existing = SparkSession.getActiveSession()
    session = sparkvision.start(
        "local[2]",
        "2g",
        app_name="sparkvision-training-tests",
        **{
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    if existing is None:
        session.stop()


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_faces_dataset(
        tmp_path_factory.mktemp("spark_faces"), train_faces=30, val_faces=20, textures=(15, 10)
    )


@pytest.fixture(scope="module")
def fitted(spark, small_faces: tuple[Path, Path]) -> PipelineModel:
    train_dir, _ = small_faces
    frame = read_labelled_images(spark, train_dir)
    assembler = ImageAssembler().setInputCol("content").setOutputCol("image_assembler")
    approach = (
        ImageClassifierApproach()
        .setInputCols(["image_assembler"])
        .setLabelCol("label")
        .setOutputCol("class")
        .setModelName("spark_faces")
        .setSeed(1)
    )
    return Pipeline().setStages([assembler, approach]).fit(frame)


def _accuracy(spark, model: PipelineModel, folder: Path) -> float:
    scored = prediction_columns(model.transform(read_labelled_images(spark, folder)), "class", prefix="pred_")
    result = scored.select((F.col("label") == F.col("pred_label")).cast("int").alias("hit")).collect()
    return sum(r["hit"] for r in result) / len(result)


def test_fit_in_a_pipeline_gives_the_ordinary_classifier_stage(
    spark, fitted: PipelineModel, small_faces: tuple[Path, Path]
) -> None:
    _, val_dir = small_faces
    stage = fitted.stages[-1]
    assert type(stage) is ImageClassifierModel
    assert stage.getClasses() == ["background", "face", "texture"]
    assert stage.getTopK() == 3 and stage.getOutputCol() == "class"
    summary = stage.summary
    assert summary["head_trainer"] == "local" and summary["train_counts"]["face"] == 24
    assert summary["val_accuracy"] >= 0.85  # the split of the training photos
    # The model is in the cache under its name: every front can use it.
    assert Path(summary["model_dir"]) == models_root() / "spark_faces"
    assert Classifier.pretrained("spark_faces").spec.extra["training"]["engine"] == "spark"
    # Photos no training image came from:
    assert _accuracy(spark, fitted, val_dir) >= 0.85


def test_pipeline_save_load_round_trip(
    spark, fitted: PipelineModel, small_faces: tuple[Path, Path], tmp_path: Path
) -> None:
    _, val_dir = small_faces
    fitted.write().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    frame = read_labelled_images(spark, val_dir).orderBy("path").limit(6)
    columns = ("path", "pred_label", "pred_score")
    before = (
        prediction_columns(fitted.transform(frame), "class", prefix="pred_")
        .select(*columns)
        .orderBy("path")
        .collect()
    )
    after = (
        prediction_columns(loaded.transform(frame), "class", prefix="pred_")
        .select(*columns)
        .orderBy("path")
        .collect()
    )
    assert before == after and len(before) > 0

    approach = (
        ImageClassifierApproach().setLabelCol("kind").setValSplit(0.3).setHeadTrainer("mllib").setEpochs(7)
    )
    approach.write().save(str(tmp_path / "approach"))
    again = ImageClassifierApproach.load(str(tmp_path / "approach"))
    assert (again.getLabelCol(), again.getValSplit(), again.getHeadTrainer(), again.getEpochs()) == (
        "kind",
        0.3,
        "mllib",
        7,
    )
    assert again.getBaseModel() == "efficientnet_lite0"


def test_mllib_head_on_a_raw_binary_column(spark, tmp_path: Path) -> None:
    train_dir, _ = build_faces_dataset(tmp_path, train_faces=12, val_faces=1, textures=(6, 1))
    frame = read_labelled_images(spark, train_dir)  # 36 rows: MLlib's cost here is per job, not per row
    approach = (
        ImageClassifierApproach()
        .setInputCols(["content"])  # raw binaryFile bytes: assembled on the fly
        .setHeadTrainer("mllib")
        .setValSplit(0.25)
        .setSeed(3)
        .setEpochs(15)  # each L-BFGS iteration is a Spark job: keep the test short...
        .setRegParam(0.01)  # ...and fit once rather than once per regularisation strength
    )
    stage = approach.fit(frame)
    summary = stage.summary
    assert summary["head_trainer"] == "mllib" and summary["head"]["kind"] == "mllib-logistic"
    assert summary["val_accuracy"] >= 0.8
    assert summary["head"]["settings"]["regParam"] == 0.01
    # The stage reads annotations: put an assembler in front of it, as in any pipeline.
    assembled = ImageAssembler().setInputCol("content").setOutputCol("image_assembler").transform(frame)
    out = prediction_columns(
        stage.setInputCols(["image_assembler"]).transform(assembled), "class", prefix="pred_"
    )
    hits = out.select((F.col("label") == F.col("pred_label")).cast("int").alias("h")).collect()
    assert sum(r["h"] for r in hits) / len(hits) >= 0.85


def test_bad_input(spark, fitted: PipelineModel, small_faces: tuple[Path, Path]) -> None:
    train_dir, _ = small_faces
    frame = read_labelled_images(spark, train_dir)
    one_class = frame.where(F.col("label") == "face")
    with pytest.raises(ConfigError, match="only one class"):
        ImageClassifierApproach().setInputCols(["content"]).fit(one_class)
    nulls = frame.withColumn("label", F.when(F.col("label") == "face", None).otherwise(F.col("label")))
    with pytest.raises(ConfigError, match="null values"):
        ImageClassifierApproach().setInputCols(["content"]).fit(nulls)
    with pytest.raises(ConfigError, match="label column 'kind' not found"):
        ImageClassifierApproach().setInputCols(["content"]).setLabelCol("kind").fit(frame)
    with pytest.raises(ConfigError, match="invalid model name"):
        ImageClassifierApproach().setModelName("a/b")
    with pytest.raises(ConfigError, match="already exists"):
        ImageClassifierApproach().setInputCols(["content"]).setModelName("spark_faces").fit(frame)
