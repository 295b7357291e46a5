"""Scaling on a real Spark standalone cluster: the same photos on 1 worker, then on 2 (1 core each).

Starts the test cluster of ``scripts/test_cluster.py`` (master and two 1-core workers in network
namespaces, needs root), ships the packed environment (``sparkvision cluster pack-env``), and runs
the README's pipeline (``ImageAssembler`` → ``EfficientNetForImageClassification``, binaryFile input,
``noop`` sink) over one folder of real-size JPEGs:

  (a) embedded, one core: ``Classifier(threads=1).classify(folder)`` in this process — the ceiling
      of one executor core;
  (b) the cluster with ``spark.cores.max=1``: one executor on one worker;
  (c) the cluster with ``spark.cores.max=2``: one executor on each worker.

and prints images/s, efficiency = rate(2) / (2 · rate(1)), and each rate against (a). Session
start-up, executors fetching and unpacking the environment, and a first small job (Python workers
starting, the model shipped and loaded) are timed and printed separately, not counted in the rates.
Rates are medians over ``--repeats``.

    sudo python benchmarks/cluster_scaling.py                      # 1,000 JPEGs, long side 300–2000 px
    sudo python benchmarks/cluster_scaling.py --count 300 --repeats 1

The workers are namespaces of one machine: two 1-core workers use two of its cores, and the driver
and the embedded run share them too, so run it on an otherwise idle machine with at least 2 cores.
Target (issue 12): efficiency ≥ 0.85.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import ROOT, make_jpeg_folder


def _cluster_script():
    spec = importlib.util.spec_from_file_location(
        "sparkvision_test_cluster", ROOT / "scripts" / "test_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def embedded_one_core(folder: Path, model: str, batch_size: int, repeats: int) -> list[float]:
    from sparkvision import Classifier

    classifier = Classifier.pretrained(model, threads=1)
    files = sorted(folder.glob("*.jpg"))
    list(classifier.classify(files[:8], batch_size=8))  # warm-up: the ONNX session
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(1 for p in classifier.classify(files, batch_size=batch_size) if p.ok)
        rates.append(count / (time.perf_counter() - started))
    return rates


def cluster_rates(
    script,
    cluster,
    environment: Path,
    folder: Path,
    model: str,
    executors: int,
    batch_size: int,
    repeats: int,
    partition_mb: int,
) -> list[float]:
    from pyspark.ml import Pipeline

    import sparkvision
    from sparkvision.annotator import EfficientNetForImageClassification
    from sparkvision.base import ImageAssembler, read_images

    os.environ["SPARK_LOCAL_IP"] = cluster.driver_host
    os.environ["SPARK_LOCAL_DIRS"] = str(cluster.driver_local_dir)  # the driver unpacks the env here
    os.environ["JAVA_TOOL_OPTIONS"] = f"-Djava.io.tmpdir={cluster.driver_local_dir}"  # and copies it here
    started = time.perf_counter()
    spark = sparkvision.start(
        cluster.master_url,
        "1g",
        app_name=f"sparkvision-scaling-{executors}",
        environment=str(environment),
        **{
            "spark.driver.host": cluster.driver_host,
            "spark.driver.bindAddress": cluster.driver_host,
            "spark.executor.cores": "1",
            "spark.executor.memory": "1g",
            "spark.cores.max": str(executors),
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.files.maxPartitionBytes": str(partition_mb * 1024 * 1024),
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus
    while status().size() - 1 < executors:
        time.sleep(0.2)
    print(
        f"[{executors} worker(s)] session and {executors} executor(s) up: {time.perf_counter() - started:.1f} s"
    )
    files = sorted(folder.glob("*.jpg"))
    stage = EfficientNetForImageClassification.pretrained(model).setInputCols(["image_assembler"])
    pipeline = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage.setBatchSize(batch_size)])

    def run(frame) -> float:
        begun = time.perf_counter()
        pipeline.fit(frame).transform(frame).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - begun

    warm = run(read_images(spark, [str(p) for p in files[: 8 * executors]]).repartition(2 * executors))
    print(f"[{executors} worker(s)] first job (Python workers start, model shipped and loaded): {warm:.1f} s")
    frame = read_images(spark, str(folder), glob="*.jpg")
    print(f"[{executors} worker(s)] partitions: {frame.rdd.getNumPartitions()}")
    rates = [len(files) / run(read_images(spark, str(folder), glob="*.jpg")) for _ in range(repeats)]
    print(f"[{executors} worker(s)] " + ", ".join(f"{r:.1f}" for r in rates) + " img/s")
    spark.stop()
    script.clean_finished_applications(cluster)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="JPEGs in the folder (made once)")
    parser.add_argument("--folder", type=Path, default=None, help="use this folder of *.jpg instead")
    parser.add_argument("--min-side", type=int, default=300)
    parser.add_argument("--max-side", type=int, default=2000)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--partition-mb", type=int, default=16, help="spark.sql.files.maxPartitionBytes")
    parser.add_argument(
        "--environment", type=Path, default=None, help="a packed environment (else built once)"
    )
    parser.add_argument("--state", type=Path, default=ROOT / "bench-data" / "cluster-state")
    args = parser.parse_args()

    folder = args.folder or make_jpeg_folder(args.count, min_side=args.min_side, max_side=args.max_side)
    count = len(list(folder.glob("*.jpg")))
    print(f"{count} JPEGs in {folder}; {os.cpu_count()} CPUs on this machine")
    environment = args.environment
    if environment is None:
        from sparkvision.spark.cluster import pack_env

        environment = ROOT / "bench-data" / "sparkvision-env.tar.gz"
        if not environment.exists():
            began = time.perf_counter()
            pack_env(environment, compress_level=1)
            print(f"packed the environment: {time.perf_counter() - began:.0f} s")

    ceiling = statistics.median(embedded_one_core(folder, args.model, args.batch_size, args.repeats))
    print(f"embedded, 1 core: {ceiling:.1f} img/s")
    script = _cluster_script()
    cluster = script.up(args.state, workers=2, cores=1, memory="2g")
    try:
        rates = {
            n: statistics.median(
                cluster_rates(
                    script,
                    cluster,
                    environment,
                    folder,
                    args.model,
                    n,
                    args.batch_size,
                    args.repeats,
                    args.partition_mb,
                )
            )
            for n in (1, 2)
        }
    finally:
        script.down(args.state)

    print()
    print(f"{'path':<40} {'img/s':>8} {'÷ embedded 1-core':>18}")
    print(f"{'(a) embedded, 1 core':<40} {ceiling:8.1f} {1.0:18.2f}")
    for n, label in ((1, "(b) cluster, 1 worker × 1 core"), (2, "(c) cluster, 2 workers × 1 core")):
        print(f"{label:<40} {rates[n]:8.1f} {rates[n] / ceiling:18.2f}")
    efficiency = rates[2] / (2 * rates[1])
    print(f"\nefficiency = rate(2) / (2 · rate(1)) = {efficiency:.2f}  (target ≥ 0.85)")
    per_day = 100e6 / 86400
    print(
        f"100 M images/day = {per_day:.0f} img/s: ≈ {per_day / (rates[2] / 2):.0f} executor cores at this "
        f"machine's per-core rate with 2-worker efficiency ({per_day / ceiling:.0f} at the embedded ceiling)"
    )


if __name__ == "__main__":
    main()
