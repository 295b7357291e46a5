"""The seed's pipeline on a real Spark standalone cluster: a master and two 1-core workers, each in its
own network namespace, started with Spark's own launcher; nodes whose Python has no sparkvision and
whose ``SPARKVISION_HOME`` is empty, so the code travels in the packed environment and the model with
the job. Three applications run in turn (cluster_app.py):

1. ``first``: the README's pipeline on Spark's image source and on binaryFile (a corrupt file among
   real photos), ``PipelineModel.save``; then one worker's executor is SIGKILLed in the middle of a
   job of many small partitions.
2. ``second``: ``PipelineModel.load`` + ``transform`` in a new application; then a Structured Streaming
   query over a folder, killed (driver and JVM, SIGKILL) after its first micro-batch commits.
3. ``restart``: the same query from its checkpoint, until the folder is drained.

Every prediction is compared with the embedded :class:`sparkvision.Classifier` on the same files.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster_helpers import AppRun, cluster_script, photo_variants, write_mixed_images

from sparkvision import Classifier

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TOP_K = 3  # the apps' classifier stage uses setTopK(3)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cluster-data")
    mixed = write_mixed_images(root / "images")
    fault = photo_variants(root / "fault", 36, prefix="fault", seed=1)
    wave1 = photo_variants(root / "wave1", 8, prefix="wave1", seed=2)
    wave2 = photo_variants(root / "wave2", 4, prefix="wave2", seed=3)
    (root / "incoming").mkdir()
    return {"root": root, "mixed": mixed, "fault": fault, "wave1": wave1, "wave2": wave2}


@pytest.fixture(scope="module")
def embedded(lite0_dir: Path, data) -> dict[str, Any]:
    """What the embedded core says about every file the applications classify, by file name."""
    files = [*data["mixed"].values(), *data["fault"], *data["wave1"], *data["wave2"]]
    return {Path(p.path).name: p for p in Classifier(lite0_dir).classify(files, top_k=TOP_K)}


@pytest.fixture(scope="module")
def config(cluster, packed_env: Path, lite0_dir: Path, data) -> dict[str, Any]:
    root = data["root"]
    return {
        "master": cluster.master_url,
        "driver_host": cluster.driver_host,
        "environment": str(packed_env),
        "images": str(root / "images"),
        "fault_images": str(root / "fault"),
        "pipeline": str(root / "pipeline"),
        "incoming": str(root / "incoming"),
        "sink": str(root / "sink"),
        "checkpoint": str(root / "checkpoint"),
    }


def _run(cluster, mode: str, config: dict[str, Any], root: Path, on_signal=None) -> AppRun:
    # The driver's local and temporary dirs (it copies and unpacks the environment there too) in the
    # cluster's scratch, so that a killed driver leaves nothing behind in /tmp.
    env = {
        "SPARK_LOCAL_DIRS": str(cluster.driver_local_dir),
        "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={cluster.driver_local_dir}",
    }
    app = AppRun(mode, {**config, "report": str(root / f"{mode}.json")}, root, env)
    try:
        app.run(on_signal)
    finally:
        cluster_script.clean_finished_applications(cluster)
    return app


@pytest.fixture(scope="module")
def first_app(cluster, config, data, lite0_dir) -> dict[str, Any]:
    worker1 = cluster.workers[0]
    killed: list[int] = []

    def kill_executor(app: AppRun, line: str) -> None:
        _, application = line.split()
        for pid in cluster_script.executor_pids(worker1):
            if f"--app-id\0{application}" in "\0".join(cluster_script._cmdline(pid)):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    app = _run(cluster, "first", config, data["root"], kill_executor)
    assert app.process.returncode == 0, app.stderr_tail()
    return {**app.report(), "killed": killed, "signals": app.signals}


@pytest.fixture(scope="module")
def stream_apps(cluster, first_app, config, data) -> dict[str, Any]:
    """``second`` (load, transform, stream: killed mid-stream), then ``restart`` from the checkpoint."""
    incoming = Path(config["incoming"])

    def arrive(paths: list[Path]) -> None:  # copied next to the folder, then renamed in: atomic
        for path in paths:
            staged = shutil.copy(path, incoming.parent / f".{path.name}")
            os.replace(staged, incoming / path.name)

    arrive(data["wave1"])

    def kill_after_first_batch(app: AppRun, line: str) -> None:
        if line.startswith("batch-committed"):
            app.kill()

    second = _run(cluster, "second", config, data["root"], kill_after_first_batch)
    assert second.process.returncode == -signal.SIGKILL, second.stderr_tail()
    arrive(data["wave2"])  # more files arrive while the application is down
    restart = _run(cluster, "restart", config, data["root"])
    assert restart.process.returncode == 0, restart.stderr_tail()
    return {"second": second.report(), "signals": second.signals, "restart": restart.report()}


def _assert_same_as_embedded(rows: list[dict[str, Any]], embedded: dict[str, Any]) -> None:
    for row in rows:
        want = embedded[row["name"]]
        assert row["error"] == want.error, row["name"]
        assert row["labels"] == list(want.labels), row["name"]
        np.testing.assert_allclose(row["scores"], want.scores, atol=1e-5, err_msg=row["name"])


def _exactly_once(rows: list[dict[str, Any]]) -> set[str]:
    counts = collections.Counter(row["name"] for row in rows)
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n > 1}
    return set(counts)


def test_seed_pipeline_binary_file_matches_embedded(first_app, data, embedded):
    rows = first_app["binary"]
    assert _exactly_once(rows) == set(data["mixed"])
    _assert_same_as_embedded(rows, embedded)
    [corrupt] = [r for r in rows if r["name"] == "f_corrupt.jpg"]
    assert corrupt["error"] and corrupt["labels"] == []  # an error row, aligned, not a failed job


def test_seed_pipeline_image_source_matches_embedded(first_app, data, embedded):
    rows = {r["name"]: r for r in first_app["image_source"]}
    assert set(rows) == set(data["mixed"]) - {"f_corrupt.jpg"}  # dropInvalid drops what the JVM can't read
    for name in ("c_camera.png", "e_astronaut_rgba.png"):  # lossless: identical to the embedded path
        _assert_same_as_embedded([rows[name]], embedded)
    for name in ("a_chelsea.jpg", "b_rocket.jpg", "d_coffee.jpg"):  # the JVM's JPEG decoder differs slightly
        assert rows[name]["labels"][0] == embedded[name].label, name


def test_executors_on_both_workers_run_the_shipped_environment(first_app, cluster):
    probes = first_app["probe"]
    workers = {w.address: w for w in cluster.workers}
    assert {p["address"] for p in probes} == set(workers)  # two executors, one per worker
    for probe in probes:
        worker = workers[probe["address"]]
        work = cluster.work_dir(worker)
        assert Path(probe["cwd"]).is_relative_to(work)  # an executor of this worker, in its work dir
        assert probe["python"] == os.path.join(probe["cwd"], "environment", "bin", "python")
        assert Path(probe["sparkvision"]).is_relative_to(Path(probe["cwd"]) / "environment")
        assert not probe["path_python_imports_sparkvision"]  # the node's own python3 has no sparkvision
        assert probe["home"] == str(Path(worker.root) / "home")
        assert probe["sparkvision_home"] == str(Path(worker.root) / "sparkvision-home")
        # pinned (--pin-cores): the executor JVM and its Python workers run on the worker's CPU only
        assert json.loads(probe["executor_cpus"]) == json.loads(probe["cpus"]) == worker.cpus
    assert {w.cpus[0] for w in cluster.workers} == set(sorted(os.sched_getaffinity(0))[:2])
    loaded = {(p["address"], m) for p in probes for m in json.loads(p["model_paths"])}
    assert {address for address, _ in loaded} == set(workers)  # both executors classified images
    for address, model_path in loaded:  # each from its own copy, fetched through Spark
        assert Path(model_path).is_relative_to(cluster.work_dir(workers[address]))
        assert "sparkvision-model-" in model_path
    for worker in cluster.workers:  # no model cache was ever made on a worker
        assert os.listdir(Path(worker.root) / "sparkvision-home") == []


def test_executor_killed_mid_job_every_row_once_same_predictions(first_app, data, embedded, cluster):
    assert first_app["killed"], f"no executor was killed (signals: {first_app['signals']})"
    assert first_app["fault_partitions"] >= 8
    [job] = first_app["fault_jobs"]
    assert job["status"] == "SUCCEEDED"
    assert job["failed_tasks"] >= 1  # the killed executor was running a task of this job
    lost = [e for e in first_app["executors"] if not e["active"]]
    assert [e["host"] for e in lost] == [cluster.workers[0].address], first_app["executors"]
    assert "137" in lost[0]["remove_reason"]  # SIGKILL
    rows = first_app["fault"]
    assert _exactly_once(rows) == {p.name for p in data["fault"]}
    _assert_same_as_embedded(rows, embedded)


def test_saved_pipeline_loaded_in_a_second_application(stream_apps, data, embedded, config):
    second = stream_apps["second"]
    assert Path(second["model_path"]).is_relative_to(config["pipeline"])  # the saved pipeline's copy
    rows = second["binary"]
    assert _exactly_once(rows) == set(data["mixed"])
    _assert_same_as_embedded(rows, embedded)


def test_stream_killed_and_restarted_from_checkpoint_loses_and_repeats_nothing(stream_apps, data, embedded):
    wave1 = {p.name for p in data["wave1"]}
    wave2 = {p.name for p in data["wave2"]}
    assert stream_apps["signals"] and stream_apps["signals"][0].startswith("batch-committed")
    before = _exactly_once(stream_apps["restart"]["before"])
    assert before and before < wave1  # killed mid-stream: some of the first files committed, not all
    after = stream_apps["restart"]["after"]
    assert _exactly_once(after) == wave1 | wave2
    _assert_same_as_embedded(after, embedded)
