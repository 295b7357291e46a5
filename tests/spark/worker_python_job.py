"""Run by test_spark_worker_python.py with a venv's python whose bin directory is NOT on ``PATH``.

Usage: python worker_python_job.py MODEL_DIR IMAGE OUTPUT_JSON

1. A session built the plain pyspark way (no ``sparkvision.start()``): PySpark's workers run
   ``python3`` from ``PATH``, which cannot import sparkvision; the classifier must say so clearly.
2. The same pipeline after ``sparkvision.start("local[1]")``: the workers run this very interpreter.
Writes what happened as JSON.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pyspark.sql import SparkSession

import sparkvision
from sparkvision.annotator import ImageClassifierModel
from sparkvision.base import ImageAssembler, Pipeline
from sparkvision.errors import ConfigError


def run(spark: SparkSession, model_dir: str, image: str) -> list[str]:
    df = spark.read.format("binaryFile").load(image)
    stages = [
        ImageAssembler().setInputCol("content"),
        ImageClassifierModel.loadSavedModel(model_dir, spark)
        .setInputCols("image_assembler")
        .setOutputCol("class"),
    ]
    return [row["class"][0].result for row in Pipeline(stages=stages).fit(df).transform(df).collect()]


def main() -> None:
    model_dir, image, output = sys.argv[1:4]
    report: dict[str, object] = {"python": sys.executable, "path": os.environ.get("PATH", "")}
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}

    builder = SparkSession.builder.master("local[1]").appName("plain")
    for key, value in conf.items():
        builder = builder.config(key, value)
    plain = builder.getOrCreate()
    plain.sparkContext.setLogLevel("FATAL")
    try:
        report["plain_result"] = run(plain, model_dir, image)
    except ConfigError as exc:
        report["plain_error"] = str(exc)
    plain.stop()

    spark = sparkvision.start("local[1]", "1g", **conf)
    spark.sparkContext.setLogLevel("ERROR")
    report["result"] = run(spark, model_dir, image)
    report["worker_python"] = (
        spark.sparkContext.parallelize([0], 1).map(lambda _: sys.executable).collect()[0]
    )
    spark.stop()
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main()
