"""The CLI's ``--spark`` job and Structured Streaming: the same predictions as the embedded path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pyspark.ml import Pipeline

from sparkvision import Classifier
from sparkvision.base import ImageAssembler, prediction_columns, read_image_stream
from sparkvision.cli import cli
from sparkvision.spark.batch import classify_paths_with_spark

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory: pytest.TempPathFactory, image_dirs) -> Path:
    """Files whose names Spark would read as glob patterns, or that need quoting."""
    folder = tmp_path_factory.mktemp("odd names")
    shutil.copy(image_dirs["good"] / "a_chelsea.jpg", folder / "cat [1].jpg")
    shutil.copy(image_dirs["good"] / "c_rgba.png", folder / "alpha*{x}.png")
    return folder


def test_classify_paths_with_spark_matches_embedded(spark, lite0_stage, image_dirs, odd_names):
    paths = [str(image_dirs["mixed"]), str(odd_names / "cat [1].jpg"), str(odd_names / "alpha*{x}.png")]
    paths.append(str(image_dirs["good"] / "b_rocket.jpg"))  # also inside the folder: listed twice
    spark_rows = list(
        classify_paths_with_spark(
            paths,
            model="efficientnet_lite0",
            master="local[2]",
            top_k=3,
            batch_size=4,
            recursive=False,
            threshold=None,
        )
    )
    embedded = list(Classifier(lite0_stage.getModelPath()).classify(paths, top_k=3, batch_size=4))
    assert [p.path for p in spark_rows] == [p.path for p in embedded]
    assert [p.index for p in spark_rows] == list(range(len(embedded)))
    for got, want in zip(spark_rows, embedded):
        assert got.labels == want.labels and got.class_ids == want.class_ids, got.path
        assert got.error == want.error, got.path
        assert (got.width, got.height) == (want.width, want.height)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    assert sum(p.error is not None for p in spark_rows) == 3  # corrupt, empty, truncated
    assert not spark.sparkContext._jsc.sc().isStopped()  # the running session was left alone


def test_threshold_applies_to_spark_results(spark, image_dirs):
    rows = list(
        classify_paths_with_spark(
            [str(image_dirs["good"])],
            model="efficientnet_lite0",
            master="local[2]",
            top_k=5,
            batch_size=None,
            recursive=False,
            threshold=0.2,
        )
    )
    assert all(all(score >= 0.2 for score in p.scores) for p in rows)
    assert any(len(p.scores) < 5 for p in rows)


def test_cli_spark_writes_the_same_outputs(spark, lite0_stage, image_dirs, tmp_path):
    runner = CliRunner()
    folder = str(image_dirs["mixed"])
    args = ["classify", folder, str(tmp_path / "missing.jpg"), "-f", "json", "-k", "2", "-q"]
    embedded = runner.invoke(cli, args)
    through_spark = runner.invoke(cli, [*args, "--spark-master", "local[2]"])
    assert embedded.exit_code == 0 and through_spark.exit_code == 0, through_spark.output
    want, got = json.loads(embedded.stdout), json.loads(through_spark.stdout)
    assert got[-1]["path"].endswith("missing.jpg") and "not found" in got[-1]["error"]  # a row, not an abort
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for a, b in zip(got, want):
        assert (a["labels"], a["class_ids"], a["error"]) == (b["labels"], b["class_ids"], b["error"])
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    out = tmp_path / "out.parquet"
    result = runner.invoke(cli, [*args[:3], "-f", "parquet", "-o", str(out), "--spark-master", "local[2]"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pylist()
    assert [r["path"] for r in table] == [r["path"] for r in want]


def _drop(source: Path, folder: Path, staging: Path) -> None:
    """Copy a file into the watched folder atomically (write aside, then rename in)."""
    staging.mkdir(exist_ok=True)
    shutil.copy(source, staging / source.name)
    os.replace(staging / source.name, folder / source.name)


def test_stream_classifies_each_new_image_exactly_once(spark, lite0_stage, image_dirs, tmp_path):
    incoming, staging, out, checkpoint = (tmp_path / n for n in ("incoming", "staging", "out", "checkpoint"))
    incoming.mkdir()
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class").setTopK(2)
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))

    def run_until_idle(session) -> None:
        stream = read_image_stream(session, str(incoming))
        result = prediction_columns(model.transform(stream)).select(
            "path", "label", "labels", "scores", "error"
        )
        query = (
            result.writeStream.format("parquet")
            .option("path", str(out))
            .option("checkpointLocation", str(checkpoint))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(180)
        assert query.exception() is None

    def written() -> dict[str, object]:
        rows = spark.read.parquet(str(out)).collect()
        names = [r.path.rsplit("/", 1)[-1] for r in rows]
        assert len(names) == len(set(names)), f"an image was written twice: {sorted(names)}"
        return dict(zip(names, rows))

    embedded = {
        Path(p.path).name: p
        for p in Classifier(lite0_stage.getModelPath()).classify(
            sorted(image_dirs["mixed"].iterdir()), top_k=2
        )
    }
    for name in ("a_chelsea.jpg", "c_rgba.png"):
        _drop(image_dirs["mixed"] / name, incoming, staging)
    run_until_idle(spark)
    assert set(written()) == {"a_chelsea.jpg", "c_rgba.png"}

    run_until_idle(spark)  # nothing new: nothing written again
    assert set(written()) == {"a_chelsea.jpg", "c_rgba.png"}

    for name in ("b_rocket.jpg", "d_gray.png", "e_corrupt.jpg"):
        _drop(image_dirs["mixed"] / name, incoming, staging)
    run_until_idle(spark.newSession())  # a restarted query, from the checkpoint
    rows = written()
    assert set(rows) == {"a_chelsea.jpg", "b_rocket.jpg", "c_rgba.png", "d_gray.png", "e_corrupt.jpg"}
    for name, row in rows.items():
        assert row.labels == list(embedded[name].labels)
        assert row.error == embedded[name].error
        np.testing.assert_allclose(row.scores, embedded[name].scores, atol=1e-5)
    assert rows["e_corrupt.jpg"].label is None and rows["e_corrupt.jpg"].error
