"""End to end on real photos with the real default model: Spark's answers are the embedded core's.

Every test compares the Spark path with ``Classifier.classify`` on the same files: labels, class ids
and scores, through Spark's image source and through binaryFile, for JPEG photos, an RGBA PNG and a
gray PNG, with broken files among good ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F

from sparkvision import Classifier
from sparkvision.annotator import EfficientNetForImageClassification
from sparkvision.base import ImageAssembler, LightPipeline, prediction_columns, read_images
from sparkvision.images import decode_bgr_struct
from sparkvision.spark.inference import worker_cache_info

pytestmark = pytest.mark.spark

SCORE_TOL = 1e-5


def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


def _embedded(stage, paths, top_k: int = 5) -> dict[str, object]:
    classifier = Classifier(stage.getModelPath())
    return {Path(p.path).name: p for p in classifier.classify([str(p) for p in paths], top_k=top_k)}


def _by_name(rows, column: str = "class") -> dict[str, dict[str, str]]:
    out = {}
    for row in rows:
        [annotation] = row[column]
        out[_name(annotation.metadata["origin"])] = annotation
    return out


def _ranked(annotation) -> tuple[list[str], list[float], list[int]]:
    meta = annotation.metadata
    k = int(meta["top_k"])
    return (
        [meta[f"label_{i}"] for i in range(1, k + 1)],
        [float(meta[f"score_{i}"]) for i in range(1, k + 1)],
        [int(meta[f"class_id_{i}"]) for i in range(1, k + 1)],
    )


def _assert_same(annotation, prediction, tol: float = SCORE_TOL) -> None:
    labels, scores, ids = _ranked(annotation)
    assert annotation.result == prediction.label
    assert labels == list(prediction.labels)
    assert ids == list(prediction.class_ids)
    np.testing.assert_allclose(scores, prediction.scores, atol=tol)
    assert float(annotation.metadata["confidence"]) == pytest.approx(prediction.score, abs=tol)
    assert "error" not in annotation.metadata


@pytest.fixture(scope="module")
def pipeline(lite0_stage):
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    return Pipeline().setStages(
        [ImageAssembler().setInputCol("image").setOutputCol("image_assembler"), stage]
    )


def test_spark_nlp_example_image_source_matches_embedded(spark, pipeline, lite0_stage, image_dirs):
    image_df = spark.read.format("image").option("dropInvalid", value=True).load(str(image_dirs["good"]))
    model = pipeline.fit(image_df)
    result = model.transform(image_df)
    names = result.selectExpr("reverse(split(image.origin, '/'))[0] as image_name", "class.result").collect()
    embedded = _embedded(lite0_stage, image_dirs["good_files"])
    assert {r.image_name: r.result for r in names} == {n: [p.label] for n, p in embedded.items()}

    annotations = _by_name(result.select("class").collect())
    # PNGs are lossless: Spark's BGRA / gray rows must give exactly the embedded pixels.
    for name in ("c_rgba.png", "d_gray.png"):
        _assert_same(annotations[name], embedded[name])
    assert annotations["c_rgba.png"].metadata["mode"] == "24"
    assert annotations["c_rgba.png"].metadata["nChannels"] == "4"
    assert annotations["d_gray.png"].metadata["mode"] == "0"
    assert (annotations["d_gray.png"].metadata["width"], annotations["d_gray.png"].metadata["height"]) == (
        "200",
        "150",
    )
    # JPEGs: the JVM's decoder differs from libjpeg-turbo by a grey level here and there.
    for name in ("a_chelsea.jpg", "b_rocket.jpg"):
        labels, scores, _ = _ranked(annotations[name])
        assert labels[0] == embedded[name].label
        np.testing.assert_allclose(scores[0], embedded[name].score, atol=0.03)


def test_wrong_channel_order_would_be_caught(spark, lite0_stage, image_dirs):
    """The tolerance above is meaningful: reading the RGBA row as RGBA instead of BGRA changes scores."""
    row = spark.read.format("image").load(str(image_dirs["good"] / "c_rgba.png")).first().image
    right = decode_bgr_struct(row.height, row.width, row.nChannels, row.mode, bytes(row.data))
    data = np.frombuffer(bytes(row.data), np.uint8).reshape(row.height, row.width, 4)
    swapped = decode_bgr_struct(row.height, row.width, 4, row.mode, data[:, :, [2, 1, 0, 3]].tobytes())
    classifier = Classifier(lite0_stage.getModelPath())
    good, bad = classifier.classify_batch([right, swapped], top_k=1)
    embedded = _embedded(lite0_stage, [image_dirs["good"] / "c_rgba.png"], top_k=1)["c_rgba.png"]
    assert good.scores[0] == pytest.approx(embedded.scores[0], abs=SCORE_TOL)
    assert bad.labels != good.labels or abs(bad.scores[0] - good.scores[0]) > 100 * SCORE_TOL


def test_binary_file_matches_embedded_exactly(spark, lite0_stage, image_dirs):
    frame = read_images(spark, str(image_dirs["good"]))
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    result = stage.transform(ImageAssembler().setInputCol("content").transform(frame))
    annotations = _by_name(result.select("class").collect())
    embedded = _embedded(lite0_stage, image_dirs["good_files"])
    assert set(annotations) == set(embedded)
    for name, prediction in embedded.items():
        _assert_same(annotations[name], prediction)
        meta = annotations[name].metadata
        assert (int(meta["width"]), int(meta["height"])) == (prediction.width, prediction.height)
    assert (annotations["c_rgba.png"].metadata["mode"], annotations["c_rgba.png"].metadata["nChannels"]) == (
        "RGBA",
        "4",
    )
    assert annotations["d_gray.png"].metadata["mode"] == "L"
    assert annotations["a_chelsea.jpg"].metadata["mode"] == "RGB"


def test_binary_file_applies_exif_orientation(spark, lite0_stage, tmp_path):
    from PIL import Image
    from spark_helpers import EXAMPLES

    photo = Image.open(EXAMPLES / "chelsea.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90° clockwise
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    frame = ImageAssembler().setInputCol("content").transform(read_images(spark, str(tmp_path)))
    [annotation] = stage.transform(frame).first()["class"]
    expected = _embedded(lite0_stage, [tmp_path / "sideways.jpg"])["sideways.jpg"]
    assert (expected.width, expected.height) == photo.size  # upright again
    _assert_same(annotation, expected)
    assert (int(annotation.metadata["width"]), int(annotation.metadata["height"])) == photo.size


@pytest.mark.parametrize("arrow_rows", [None, 2], ids=["default-arrow-batches", "2-row-arrow-batches"])
def test_rows_stay_aligned_with_broken_files(spark, lite0_stage, image_dirs, arrow_rows):
    # With 2-row Arrow batches, inference batches of 3 span Arrow batches: the worker streams a
    # partition through the core across batch boundaries, and the rows must still line up.
    frame = read_images(spark, str(image_dirs["mixed"])).repartition(3)
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class").setBatchSize(3)
    result = stage.transform(ImageAssembler().setInputCol("content").transform(frame))
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    if arrow_rows is not None:
        spark.conf.set(key, str(arrow_rows))
    try:
        rows = result.select("path", "length", "class").collect()
    finally:
        spark.conf.unset(key)
    # Every file in its own row, except the empty one: Spark's file sources skip 0-byte files.
    assert sorted(_name(r.path) for r in rows) == sorted(
        p.name for p in image_dirs["mixed"].iterdir() if p.stat().st_size
    )
    embedded = _embedded(lite0_stage, sorted(image_dirs["mixed"].iterdir()))
    for row in rows:
        name = _name(row.path)
        [annotation] = row["class"]
        assert _name(annotation.metadata["origin"]) == name  # the annotation belongs to this row
        if embedded[name].ok:
            _assert_same(annotation, embedded[name])
        else:
            assert annotation.result == ""
            assert annotation.metadata["error"] == embedded[name].error
            assert "confidence" not in annotation.metadata
    errors = {_name(r.path): r["class"][0].metadata.get("error", "") for r in rows}
    assert "truncated" in errors["g_truncated.jpg"]
    assert errors["e_corrupt.jpg"]


def test_image_source_invalid_rows_become_errors(spark, lite0_stage, image_dirs):
    image_df = spark.read.format("image").option("dropInvalid", value=False).load(str(image_dirs["mixed"]))
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    rows = stage.transform(ImageAssembler().transform(image_df)).select("image.origin", "class").collect()
    by_name = {_name(r.origin): r["class"][0] for r in rows}
    assert len(rows) == image_df.count()
    assert "Spark could not decode" in by_name["e_corrupt.jpg"].metadata["error"]
    assert by_name["e_corrupt.jpg"].result == ""
    embedded = _embedded(lite0_stage, image_dirs["good_files"])
    _assert_same(by_name["c_rgba.png"], embedded["c_rgba.png"])


def test_null_and_empty_images_give_error_annotations(spark, lite0_stage, image_dirs):
    frame = read_images(spark, str(image_dirs["good"]))
    cat = frame.where(F.col("path").endswith("a_chelsea.jpg"))
    with_bad = (
        frame.where(F.col("path").endswith(".png"))
        .union(cat.withColumn("content", F.lit(None).cast("binary")))
        .union(cat.withColumn("content", F.lit(b"").cast("binary")))
    )
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    rows = stage.transform(ImageAssembler().setInputCol("content").transform(with_bad)).collect()
    errors = [r["class"][0].metadata.get("error") for r in rows]
    assert len(rows) == 4
    assert errors.count(None) == 2
    assert any(e and "no image data" in e for e in errors)
    assert any(e and "empty" in e for e in errors)


def test_prediction_columns_are_plain_and_typed(spark, lite0_stage, image_dirs):
    frame = read_images(spark, str(image_dirs["mixed"]))
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class").setTopK(3)
    result = prediction_columns(stage.transform(ImageAssembler().setInputCol("content").transform(frame)))
    types = dict(result.dtypes)
    assert types["label"] == "string" and types["score"] == "double"
    assert types["labels"] == "array<string>" and types["scores"] == "array<double>"
    assert types["class_ids"] == "array<int>"
    embedded = _embedded(lite0_stage, sorted(image_dirs["mixed"].iterdir()), top_k=3)
    for row in result.select("path", "label", "score", "labels", "scores", "class_ids", "error").collect():
        expected = embedded[_name(row.path)]
        assert row.label == expected.label
        assert row.labels == list(expected.labels)
        assert row.class_ids == list(expected.class_ids)
        assert row.error == expected.error
        np.testing.assert_allclose(row.scores, expected.scores, atol=SCORE_TOL)
    with pytest.raises(ValueError, match="already exist"):
        prediction_columns(result)


def test_embeddings_are_the_models(spark, lite0_stage, image_dirs):
    frame = read_images(spark, str(image_dirs["good"] / "a_chelsea.jpg"))
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setIncludeEmbeddings(True)
    [row] = stage.transform(ImageAssembler().setInputCol("content").transform(frame)).collect()
    expected = next(Classifier(lite0_stage.getModelPath()).embed(str(image_dirs["good"] / "a_chelsea.jpg")))
    np.testing.assert_allclose(row["class"][0].embeddings, expected.embedding, atol=1e-4)


def test_light_pipeline_matches_transform(spark, pipeline, lite0_stage, image_dirs, tmp_path):
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class").setTopK(3)
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))
    files = sorted(image_dirs["mixed"].iterdir())
    transformed = _by_name(model.transform(read_images(spark, [str(f) for f in files], glob="*")).collect())
    missing = tmp_path / "missing.jpg"
    light = LightPipeline(model)
    results = light.fullAnnotateImage([str(f) for f in files] + [str(missing)])
    assert len(results) == len(files) + 1
    for path, result in zip(files, results):
        [image] = result["image_assembler"]
        [annotation] = result["class"]
        assert image.origin == str(path)
        if path.name not in transformed:  # the empty file, which Spark's file sources skip
            assert path.stat().st_size == 0
            assert "empty" in annotation.metadata["error"]
            continue
        expected = transformed[path.name]
        assert annotation.result == expected.result
        light_meta = {k: v for k, v in annotation.metadata.items() if k != "origin"}
        spark_meta = {k: v for k, v in expected.metadata.items() if k != "origin"}
        assert light_meta.keys() == spark_meta.keys()
        score_keys = {"confidence"} | {k for k in spark_meta if k.startswith("score_")}
        score_keys |= {v for k, v in spark_meta.items() if k.startswith("label_")}
        for key, value in spark_meta.items():
            if key in score_keys:
                assert float(light_meta[key]) == pytest.approx(float(value), abs=SCORE_TOL), key
            else:
                assert light_meta[key] == value, key
    assert "file not found" in results[-1]["class"][0].metadata["error"]
    assert results[-1]["class"][0].result == ""
    annotated = light.annotate(str(image_dirs["good"] / "a_chelsea.jpg"))
    assert annotated == {
        "image_assembler": [str(image_dirs["good"] / "a_chelsea.jpg")],
        "class": [transformed["a_chelsea.jpg"].result],
    }


def test_pipeline_model_round_trip(spark, lite0_stage, image_dirs, tmp_path):
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    stage.setTopK(3).setBatchSize(4).setResample(2)  # changed after loading: must survive save/load
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    assert (tmp_path / "pipeline" / "stages").is_dir()
    saved_models = list((tmp_path / "pipeline" / "stages").glob("*/model/model.onnx"))
    assert len(saved_models) == 1  # the model travels with the pipeline

    other = spark.newSession()
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    loaded_stage = loaded.stages[1]
    assert type(loaded_stage) is EfficientNetForImageClassification
    assert (loaded_stage.getTopK(), loaded_stage.getBatchSize(), loaded_stage.getResample()) == (3, 4, 2)
    assert loaded_stage.getCropPct() == stage.getCropPct()
    assert Path(loaded_stage.getModelPath()).parent.parent.parent == tmp_path / "pipeline"
    frame = read_images(other, str(image_dirs["good"]))
    before = _by_name(model.transform(frame).collect())
    after = _by_name(loaded.transform(frame).collect())
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].result == after[name].result
        assert before[name].metadata == after[name].metadata
    # Bilinear (resample=2) is not the model's bicubic: the change really reached the executors.
    embedded = _embedded(lite0_stage, image_dirs["good_files"], top_k=3)
    assert any(abs(float(after[n].metadata["confidence"]) - embedded[n].score) > 1e-4 for n in embedded)


def test_each_python_worker_loads_the_model_once(spark, lite0_stage, image_dirs):
    frame = read_images(spark, str(image_dirs["good"]))
    many = frame.union(frame).union(frame).repartition(6)
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class")
    assert stage.transform(ImageAssembler().setInputCol("content").transform(many)).count() == 12

    def probe(batches):
        import pandas as pd

        from sparkvision.spark.inference import worker_cache_info as info

        keys = ("sessions_created", "batches", "rows", "classifiers", "model_dirs", "pid")
        for _ in batches:
            yield pd.DataFrame([{key: info()[key] for key in keys}])

    stats = (
        spark.range(0, 8, 1, 8)
        .mapInPandas(
            probe,
            "sessions_created long, batches long, rows long, classifiers long, model_dirs long, pid long",
        )
        .collect()
    )
    per_worker = {row.pid: row for row in stats}
    assert per_worker, "no Python worker answered"
    # One ONNX session per model directory per worker, however many batches and tasks it served.
    assert all(row.sessions_created == row.model_dirs for row in per_worker.values())
    assert any(row.batches >= 2 and row.sessions_created >= 1 for row in per_worker.values())
    assert worker_cache_info()["pid"] not in per_worker  # the work ran in Spark's Python workers


def test_worker_streams_arrow_batches_and_keeps_their_sizes(lite0_stage, image_dirs, monkeypatch):
    """The UDF body without Spark: frames of 3, 0, 2 and 0 rows come back as frames of the same sizes,
    each row's annotation from that row's bytes (a corrupt file among them), although the core
    classifies them as one stream in batches of 2."""
    import pandas as pd

    from sparkvision.spark import inference

    monkeypatch.setattr(inference, "_shipped_model_dir", lambda job: Path(lite0_stage.getModelPath()))
    names = ["a_chelsea.jpg", "e_corrupt.jpg", "b_rocket.jpg", "g_truncated.jpg", "d_gray.png"]
    files = [image_dirs["mixed"] / name for name in names]

    def frame(paths):
        return pd.DataFrame(
            {
                "origin": [str(p) for p in paths],
                "height": [-1] * len(paths),
                "width": [-1] * len(paths),
                "nChannels": [-1] * len(paths),
                "mode": [-1] * len(paths),
                "data": [p.read_bytes() for p in paths],
                "encoded": [True] * len(paths),
            }
        )

    job = lite0_stage.copy()._job("unused")
    job = inference.ClassifyJob(**{**job.__dict__, "batch_size": 2})
    frames = [frame(files[:3]), frame([]), frame(files[3:5]), frame([])]
    out = list(inference.classify_batches(job, iter(frames)))
    assert [len(f) for f in out] == [3, 0, 2, 0]
    rows = pd.concat(out, ignore_index=True)
    embedded = _embedded(lite0_stage, files)
    for path, (_, row) in zip(files, rows.iterrows()):
        assert _name(row["metadata"]["origin"]) == path.name
        expected = embedded[path.name]
        assert row["result"] == (expected.label if expected.ok else "")
        assert row["metadata"].get("error") == expected.error
    assert [row["result"] == "" for _, row in rows.iterrows()] == [False, True, False, True, False]
