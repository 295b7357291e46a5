"""Run by test_spark_cluster.py in a fresh Python process: a saved pipeline on local-cluster[2,1,1024].

Usage: python cluster_job.py PIPELINE_DIR IMAGES_DIR OUTPUT_JSON

Starts a new session on a local cluster of two executor processes, loads the saved PipelineModel,
classifies IMAGES_DIR through binaryFile and through Spark's image source (spread over several
partitions), and writes what it saw as JSON: predictions per file, and per Python worker its process
id, its executor's SparkFiles directory and the model directories it loaded.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


_STARTED = time.perf_counter()


def _log(what: str) -> None:
    print(f"[cluster_job] {time.perf_counter() - _STARTED:6.1f} s  {what}", file=sys.stderr, flush=True)


def _probe(batches):
    import pandas as pd
    from pyspark import SparkFiles

    from sparkvision.spark.inference import worker_cache_info

    for _ in batches:
        info = worker_cache_info()
        yield pd.DataFrame(
            [
                {
                    "pid": info["pid"],
                    "files_root": os.path.realpath(SparkFiles.getRootDirectory()),
                    "model_paths": json.dumps(info["model_paths"]),
                    "sessions_created": info["sessions_created"],
                    "rows": info["rows"],
                }
            ]
        )


def _rows(result) -> dict[str, dict]:
    out = {}
    for row in result.select("image_assembler", "class").collect():
        [annotation] = row["class"]
        meta = annotation.metadata
        name = meta["origin"].rsplit("/", 1)[-1]
        k = int(meta.get("top_k", 0))
        out[name] = {
            "result": annotation.result,
            "labels": [meta[f"label_{i}"] for i in range(1, k + 1)],
            "scores": [float(meta[f"score_{i}"]) for i in range(1, k + 1)],
            "error": meta.get("error"),
        }
    return out


def main(pipeline_dir: str, images_dir: str, output: str) -> None:
    from pyspark.ml import Pipeline, PipelineModel

    import sparkvision
    from sparkvision.base import ImageAssembler, read_images

    spark = sparkvision.start(
        "local-cluster[2,1,1024]",
        "1g",
        app_name="sparkvision-cluster-test",
        **{
            "spark.executor.memory": "512m",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        _log("session started")
        model = PipelineModel.load(pipeline_dir)
        files = read_images(spark, images_dir).repartition(4)
        binary = _rows(model.transform(files))
        _log("binaryFile done")
        classifier = model.stages[-1]
        images = spark.read.format("image").option("dropInvalid", True).load(images_dir).repartition(4)
        image_source = _rows(Pipeline(stages=[ImageAssembler(), classifier]).fit(images).transform(images))
        _log("image source done")
        workers = [
            row.asDict()
            for row in spark.range(0, 8, 1, 8)
            .mapInPandas(
                _probe, "pid long, files_root string, model_paths string, sessions_created long, rows long"
            )
            .collect()
        ]
        report = {
            "binary": binary,
            "image_source": image_source,
            "workers": workers,
            "driver_files_root": os.path.realpath(
                spark.sparkContext._jvm.org.apache.spark.SparkFiles.getRootDirectory()
            ),
            "executors": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1,
            "model_path": classifier.getModelPath(),
        }
    finally:
        spark.stop()
    with open(output, "w", encoding="utf-8") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
