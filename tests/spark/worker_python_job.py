"""Run by test_spark_worker_python.py with a venv's python whose bin directory is NOT on ``PATH``.

Usage: python worker_python_job.py MODEL_DIR IMAGE OUTPUT_JSON [EXAMPLES_DIR]

1. A session built the plain pyspark way (no ``sparkvision.start()``, as Spark NLP's own tests build
   theirs): PySpark's workers would run ``python3`` from ``PATH``, which cannot import sparkvision; the
   stage runs its function on this interpreter instead (local master, no interpreter chosen) and
   classifies, leaving the context's own setting as it was.
2. The same with ``PYSPARK_PYTHON`` set to that ``python3``: the user's choice is kept, and the
   classifier says clearly that those workers cannot import sparkvision.
3. The same pipeline after ``sparkvision.start("local[1]")``: the workers run this very interpreter;
   then the README's documented example (Spark's image source, ``EfficientNetForImageClassification``)
   on EXAMPLES_DIR when given.
Writes what happened as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
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


def documented_example(spark: SparkSession, folder: str) -> dict[str, str]:
    """The README's Spark example, as written there (the imports are the star imports' names)."""
    from sparkvision.annotator import EfficientNetForImageClassification

    imageAssembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
    imageClassifier = (
        EfficientNetForImageClassification.pretrained()
        .setInputCols(["image_assembler"])
        .setOutputCol("class")
    )
    pipeline = Pipeline().setStages([imageAssembler, imageClassifier])
    imageDF = spark.read.format("image").option("dropInvalid", value=True).load(folder)
    result = pipeline.fit(imageDF).transform(imageDF)
    rows = result.selectExpr("reverse(split(image.origin, '/'))[0] as image_name", "class.result").collect()
    return {row.image_name: row.result[0] for row in rows}


def main() -> None:
    model_dir, image, output = sys.argv[1:4]
    report: dict[str, object] = {"python": sys.executable, "path": os.environ.get("PATH", "")}
    conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}

    def plain_session() -> SparkSession:
        builder = SparkSession.builder.master("local[1]").appName("plain")
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("FATAL")
        return session

    plain = plain_session()
    report["plain_result"] = run(plain, model_dir, image)
    report["plain_python_exec"] = plain.sparkContext.pythonExec
    plain.stop()

    os.environ["PYSPARK_PYTHON"] = shutil.which("python3") or "python3"
    chosen = plain_session()
    try:
        report["chosen_result"] = run(chosen, model_dir, image)
    except ConfigError as exc:
        report["chosen_error"] = str(exc)
    chosen.stop()
    del os.environ["PYSPARK_PYTHON"]

    spark = sparkvision.start("local[1]", "1g", **conf)
    spark.sparkContext.setLogLevel("ERROR")
    report["result"] = run(spark, model_dir, image)
    report["worker_python"] = (
        spark.sparkContext.parallelize([0], 1).map(lambda _: sys.executable).collect()[0]
    )
    if len(sys.argv) > 4:
        report["documented_example"] = documented_example(spark, sys.argv[4])
    spark.stop()
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main()
