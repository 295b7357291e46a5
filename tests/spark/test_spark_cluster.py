"""Distribution, proven: a saved pipeline, loaded in a new session on local-cluster[2,1,1024] (two
executor processes, each with its own work directory), predicts what the embedded core predicts, with
the model reaching each executor through SparkContext.addFile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml import Pipeline

from sparkvision import Classifier
from sparkvision.base import ImageAssembler

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("cluster_job.py")


def test_saved_pipeline_on_a_two_executor_cluster(spark, lite0_stage, image_dirs, tmp_path):
    stage = lite0_stage.copy().setInputCols(["image_assembler"]).setOutputCol("class").setTopK(3)
    model = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage]).fit(spark.range(1))
    saved = tmp_path / "pipeline"
    model.write().overwrite().save(str(saved))

    output = tmp_path / "report.json"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    completed = subprocess.run(
        [sys.executable, str(JOB), str(saved), str(image_dirs["mixed"]), str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())
    for root in {Path(w["files_root"]) for w in report["workers"]}:
        # local-cluster executors work under $SPARK_HOME/work/<app>/<executor>: clean up after us.
        if root.parent.name.startswith("app-") and root.parent.parent.name == "work":
            shutil.rmtree(root.parent, ignore_errors=True)

    assert report["executors"] == 2
    assert Path(report["model_path"]).is_relative_to(saved)  # loaded from the saved pipeline's copy
    roots = {w["files_root"] for w in report["workers"]}
    assert len(roots) == 2, roots  # two executors, two work directories
    assert report["driver_files_root"] not in roots
    loaded = [(w["files_root"], p) for w in report["workers"] for p in json.loads(w["model_paths"])]
    assert loaded, "no worker holds a model"
    for root, path in loaded:  # every executor read its own fetched copy, never the driver's path
        assert path.startswith(root) and "sparkvision-model-" in path
    assert len({root for root, _ in loaded}) == 2  # both executors classified images
    assert all(w["sessions_created"] <= 1 for w in report["workers"])

    embedded = {
        Path(p.path).name: p
        for p in Classifier(lite0_stage.getModelPath()).classify(
            sorted(image_dirs["mixed"].iterdir()), top_k=3
        )
    }
    binary = report["binary"]
    assert set(binary) == {
        name for name, p in embedded.items() if (image_dirs["mixed"] / name).stat().st_size
    }
    for name, got in binary.items():
        want = embedded[name]
        assert got["labels"] == list(want.labels), name
        assert got["error"] == want.error, name
        np.testing.assert_allclose(got["scores"], want.scores, atol=1e-5)
    image_source = report["image_source"]
    for name in ("c_rgba.png", "d_gray.png"):  # lossless: identical to the embedded path
        assert image_source[name]["labels"] == list(embedded[name].labels)
        np.testing.assert_allclose(image_source[name]["scores"], embedded[name].scores, atol=1e-5)
    for name in ("a_chelsea.jpg", "b_rocket.jpg"):
        assert image_source[name]["result"] == embedded[name].label
