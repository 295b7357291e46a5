"""The driver programs of the cluster tests, one Spark application per run, in a fresh Python process.

    python cluster_app.py first   CONFIG.json   # seed pipeline on image + binaryFile, save it, lose an executor
    python cluster_app.py second  CONFIG.json   # load the saved pipeline; stream a folder (killed mid-stream)
    python cluster_app.py restart CONFIG.json   # the same stream again from its checkpoint, to the end

CONFIG holds the master URL, the driver's address, the packed environment and the folders (see
test_cluster.py). Each run writes its findings as JSON to ``CONFIG["report"]``; lines on stdout that
start with ``@`` tell the test when to strike (``@kill-executor APP_ID``, ``@batch-committed N``).
The session is started exactly as the README's cluster guide says.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()


def _log(what: str) -> None:
    print(f"[cluster_app] {time.perf_counter() - _STARTED:6.1f} s  {what}", file=sys.stderr, flush=True)


def _signal(line: str) -> None:
    print(f"@{line}", flush=True)


def _start(config: dict[str, Any], name: str):
    import sparkvision

    os.environ["SPARK_LOCAL_IP"] = config["driver_host"]
    spark = sparkvision.start(
        config["master"],
        "1g",
        app_name=name,
        environment=config["environment"],
        **{
            "spark.driver.host": config["driver_host"],
            "spark.driver.bindAddress": config["driver_host"],
            "spark.executor.memory": "1g",
            "spark.executor.cores": "1",
            "spark.cores.max": str(config.get("executors", 2)),
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    _log(f"session started: {spark.sparkContext.applicationId}")
    _wait_for_executors(spark, config.get("executors", 2))
    return spark


def _wait_for_executors(spark, count: int, timeout: float = 240.0) -> None:
    """Jobs start only when every executor is there, so that both take tasks from the first job on."""
    deadline = time.monotonic() + timeout
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
    while status.size() - 1 < count:  # the driver's block manager is listed too
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {status.size() - 1} of {count} executors registered")
        time.sleep(0.2)
        status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
    _log(f"{count} executors registered")


def _executors(spark) -> list[dict[str, Any]]:
    """Every executor the application had (Spark's status store, as its UI shows them)."""
    summaries = spark.sparkContext._jsc.sc().statusStore().executorList(False)
    out = []
    for i in range(summaries.size()):
        e = summaries.apply(i)
        if e.id() == "driver":
            continue
        reason = e.removeReason()
        out.append(
            {
                "id": e.id(),
                "host": e.hostPort().rsplit(":", 1)[0],
                "active": e.isActive(),
                "remove_reason": reason.get() if reason.isDefined() else None,
                "failed_tasks": e.failedTasks(),
                "completed_tasks": e.completedTasks(),
            }
        )
    return out


def _job(spark, job_id: int) -> dict[str, Any]:
    job = spark.sparkContext._jsc.sc().statusStore().job(job_id)
    return {
        "status": job.status().toString(),
        "tasks": job.numTasks(),
        "completed_tasks": job.numCompletedTasks(),
        "failed_tasks": job.numFailedTasks(),
    }


def _predictions(frame, origin: str) -> list[dict[str, Any]]:
    """One dict per output row: file name, top-k labels and scores, error (rows may repeat: not merged)."""
    from sparkvision.base import prediction_columns

    rows = prediction_columns(frame).select(origin, "labels", "scores", "error").collect()
    return [
        {
            "name": r[0].rsplit("/", 1)[-1],
            "labels": list(r.labels),
            "scores": list(r.scores),
            "error": r.error,
        }
        for r in rows
    ]


def _probe(batches):
    """Per task: where this Python worker runs, with what, and which models it has loaded."""
    import subprocess

    import pandas as pd
    from pyspark import SparkFiles

    import sparkvision
    from sparkvision.spark.inference import worker_cache_info

    for _ in batches:
        time.sleep(0.2)  # keep both executors busy, so that both answer
        path_python = subprocess.run(
            ["python3", "-c", "import sparkvision"], capture_output=True, check=False
        )
        info = worker_cache_info()
        yield pd.DataFrame(
            [
                {
                    "address": os.environ.get("SPARK_LOCAL_IP", ""),
                    "cwd": os.getcwd(),
                    "python": sys.executable,
                    "sparkvision": sparkvision.__file__,
                    "path_python_imports_sparkvision": path_python.returncode == 0,
                    "home": os.environ.get("HOME", ""),
                    "sparkvision_home": os.environ.get("SPARKVISION_HOME", ""),
                    "files_root": os.path.realpath(SparkFiles.getRootDirectory()),
                    "model_paths": json.dumps(info["model_paths"]),
                    "cpus": json.dumps(sorted(os.sched_getaffinity(0))),
                    "executor_cpus": json.dumps(sorted(os.sched_getaffinity(_executor_pid()))),
                }
            ]
        )


_PROBE_SCHEMA = (
    "address string, cwd string, python string, sparkvision string, path_python_imports_sparkvision boolean, "
    "home string, sparkvision_home string, files_root string, model_paths string, cpus string, "
    "executor_cpus string"
)


def _executor_pid() -> int:
    """The executor JVM that started this Python worker (its parent, or its daemon's parent)."""
    pid = os.getpid()
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if "CoarseGrainedExecutorBackend" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
            errors="replace"
        ):
            return pid
    raise RuntimeError("no executor JVM above this Python worker")


def _watch_for_kill(spark, group: str, stop: threading.Event) -> None:
    """Say when the job of ``group`` has finished a task and runs one on each executor."""
    tracker = spark.sparkContext.statusTracker()
    while not stop.is_set():
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                if stage and stage.numCompletedTasks >= 1 and stage.numActiveTasks >= 2:
                    _signal(f"kill-executor {spark.sparkContext.applicationId}")
                    return
        time.sleep(0.05)


def first(config: dict[str, Any]) -> dict[str, Any]:
    from pyspark.ml import Pipeline

    from sparkvision.annotator import EfficientNetForImageClassification
    from sparkvision.base import ImageAssembler, read_images

    spark = _start(config, "sparkvision-cluster-first")
    report: dict[str, Any] = {"application": spark.sparkContext.applicationId}
    try:
        # The seed's pipeline, as in the README: Spark's image source...
        image_assembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
        image_classifier = (
            EfficientNetForImageClassification.pretrained()
            .setInputCols(["image_assembler"])
            .setOutputCol("class")
            .setTopK(3)
        )
        pipeline = Pipeline().setStages([image_assembler, image_classifier])
        image_df = (
            spark.read.format("image").option("dropInvalid", True).load(config["images"]).repartition(4)
        )
        model = pipeline.fit(image_df)
        report["image_source"] = _predictions(model.transform(image_df), "image.origin")
        _log("image source done")
        # ...and binaryFile: the same classifier after an assembler reading encoded bytes.
        binary_model = (
            Pipeline()
            .setStages(
                [ImageAssembler().setInputCol("content").setOutputCol("image_assembler"), image_classifier]
            )
            .fit(image_df)
        )
        files = read_images(spark, config["images"]).repartition(4)
        report["binary"] = _predictions(binary_model.transform(files), "path")
        _log("binaryFile done")
        binary_model.write().overwrite().save(config["pipeline"])
        report["probe"] = [
            r.asDict() for r in spark.range(0, 8, 1, 8).mapInPandas(_probe, _PROBE_SCHEMA).collect()
        ]
        _log("probe done")

        # An executor lost mid-job: many small partitions, SIGKILL from the test once tasks run on both.
        spark.conf.set(
            "spark.sql.files.maxPartitionBytes", str(config.get("fault_partition_bytes", 1_000_000))
        )
        fault_files = read_images(spark, config["fault_images"])
        report["fault_partitions"] = fault_files.rdd.getNumPartitions()
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_for_kill, args=(spark, "fault", stop), daemon=True)
        spark.sparkContext.setJobGroup("fault", "classification while an executor is killed")
        watcher.start()
        try:
            report["fault"] = _predictions(binary_model.transform(fault_files), "path")
        finally:
            stop.set()
        _log("fault job done")
        report["fault_jobs"] = [
            _job(spark, j) for j in spark.sparkContext.statusTracker().getJobIdsForGroup("fault")
        ]
        report["executors"] = _executors(spark)
    finally:
        spark.stop()
    return report


def _stream_query(spark, config: dict[str, Any], model, *, available_now: bool):
    from sparkvision.base import prediction_columns, read_image_stream

    stream = read_image_stream(spark, config["incoming"], max_files_per_trigger=3)
    result = prediction_columns(model.transform(stream)).select("path", "labels", "scores", "error")
    writer = (
        result.writeStream.format("parquet")
        .option("path", config["sink"])
        .option("checkpointLocation", config["checkpoint"])
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    return writer.start()


def _sink_rows(spark, config: dict[str, Any]) -> list[dict[str, Any]]:
    if not (Path(config["sink"]) / "_spark_metadata").is_dir():
        return []
    return _predictions_plain(spark.read.parquet(config["sink"]))


def _predictions_plain(frame) -> list[dict[str, Any]]:
    return [
        {
            "name": r.path.rsplit("/", 1)[-1],
            "labels": list(r.labels),
            "scores": list(r.scores),
            "error": r.error,
        }
        for r in frame.collect()
    ]


def second(config: dict[str, Any]) -> dict[str, Any]:
    from pyspark.ml import PipelineModel

    from sparkvision.base import read_images

    spark = _start(config, "sparkvision-cluster-second")
    report: dict[str, Any] = {"application": spark.sparkContext.applicationId}
    try:
        model = PipelineModel.load(config["pipeline"])
        report["model_path"] = model.stages[-1].getModelPath()
        report["binary"] = _predictions(
            model.transform(read_images(spark, config["images"]).repartition(4)), "path"
        )
        _log("loaded pipeline done")
        with open(config["report"], "w", encoding="utf-8") as fh:
            json.dump(report, fh)  # written now: this application is killed during the stream
        query = _stream_query(spark, config, model, available_now=False)
        seen = -1
        deadline = time.monotonic() + 300
        while query.isActive and time.monotonic() < deadline:
            progress = query.lastProgress
            if progress and progress["batchId"] > seen and progress["numInputRows"] > 0:
                seen = progress["batchId"]
                _signal(f"batch-committed {seen} {progress['numInputRows']}")
            time.sleep(0.05)
        raise RuntimeError("the stream was not killed (or it stopped by itself)")
    finally:
        spark.stop()


def restart(config: dict[str, Any]) -> dict[str, Any]:
    from pyspark.ml import PipelineModel

    spark = _start(config, "sparkvision-cluster-restart")
    report: dict[str, Any] = {"application": spark.sparkContext.applicationId}
    try:
        report["before"] = _sink_rows(spark, config)
        model = PipelineModel.load(config["pipeline"])
        query = _stream_query(spark, config, model, available_now=True)
        query.awaitTermination(300)
        if query.exception() is not None:
            raise RuntimeError(f"stream failed: {query.exception()}")
        report["after"] = _sink_rows(spark, config)
        _log("stream restarted and drained")
    finally:
        spark.stop()
    return report


if __name__ == "__main__":
    mode, config_path = sys.argv[1], sys.argv[2]
    config = json.loads(Path(config_path).read_text())
    result = {"first": first, "second": second, "restart": restart}[mode](config)
    with open(config["report"], "w", encoding="utf-8") as fh:
        json.dump(result, fh)
