"""Scaling on a real Spark standalone cluster: the same photos on 1 worker, then on 2 (1 core each).

Starts the test cluster of ``scripts/test_cluster.py`` (master and 1-core workers in network
namespaces, needs root), ships the packed environment (``sparkvision cluster pack-env``), and runs
the README's pipeline (``ImageAssembler`` → ``EfficientNetForImageClassification``, binaryFile input,
``noop`` sink) over one folder of real-size JPEGs:

  (a) embedded, one core: ``Classifier(threads=1).classify(folder)`` in a process pinned to CPU 0 —
      the ceiling of one executor core;
  (b) a cluster of one worker, pinned to CPU 0: one executor;
  (c) a cluster of two workers, pinned to CPU 0 and CPU 1: one executor on each.

Each worker is a 1-core host (``up(pin_cores=True)``): its worker JVM, executor JVM and Python
workers all run on its one CPU, as on a real 1-core node, and the benchmark checks that every thread
in each worker's namespace is pinned so. Without pinning (``--no-pin-cores``) a worker borrows the
machine's idle cores for its JVMs, which flatters the 1-worker run. The driver and the master have no
host of their own on one machine: by default they run on the last CPU (``--driver-cpu last``), so
in (b) they sit beside the worker like separate hosts, and in (c) they share the second worker's
CPU — the efficiency printed is a lower bound for a cluster whose driver has its own machine. The
CPU time each part used during the timed runs (driver, master, each worker's JVMs and Pythons, the
busiest JVM threads) and the share of its CPU each worker got are printed with the rates: on a
shared machine, a low efficiency with a low share is CPU the workers did not get, not extra work.

It prints images/s, efficiency = rate(2) / (2 · rate(1)), and each rate against (a). Cluster start,
session start-up, executors fetching and unpacking the environment, and a first small job (Python
workers starting, the model shipped and loaded) are timed and printed separately, not counted in
the rates. Rates are medians over ``--repeats``.

    sudo python benchmarks/cluster_scaling.py                      # 1,000 JPEGs, long side 300–2000 px
    sudo python benchmarks/cluster_scaling.py --count 300 --repeats 1
    sudo python benchmarks/cluster_scaling.py --conf spark.executor.extraJavaOptions=-XX:TieredStopAtLevel=1

Needs at least 2 CPUs, and an otherwise idle machine for figures worth quoting. Target (issue 12):
efficiency ≥ 0.85.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import ROOT, make_jpeg_folder

TICKS = os.sysconf("SC_CLK_TCK")


def _cluster_script():
    spec = importlib.util.spec_from_file_location(
        "sparkvision_test_cluster", ROOT / "scripts" / "test_cluster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- the embedded ceiling, in a process of its own pinned to one CPU -------------------------------------
def embedded_one_core(folder: Path, model: str, batch_size: int, repeats: int) -> list[float]:
    from sparkvision import Classifier

    classifier = Classifier.pretrained(model, threads=1)
    files = sorted(folder.glob("*.jpg"))
    list(classifier.classify(files[:8], batch_size=8))  # warm-up: the ONNX session
    rates = []
    cpu = time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        count = sum(1 for p in classifier.classify(files, batch_size=batch_size) if p.ok)
        rates.append(count / (time.perf_counter() - started))
    print(f"embedded: CPU ms per image {1000 * (time.process_time() - cpu) / (len(files) * repeats):.1f}")
    return rates


def embedded_pinned(cpu: int | None, folder: Path, model: str, batch_size: int, repeats: int) -> list[float]:
    """:func:`embedded_one_core` in a child process that may run on ``cpu`` only (None: anywhere)."""
    command = [sys.executable, __file__, "--embedded-only", "--folder", str(folder), "--model", model]
    command += ["--batch-size", str(batch_size), "--repeats", str(repeats)]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"embedded run failed:\n{completed.stderr[-4000:]}")
    *notes, last = completed.stdout.strip().splitlines()
    print(*notes, sep="\n")
    return json.loads(last)["rates"]


# -- where the CPU time goes ---------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and of its children that it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _is_python(script, pid: int) -> bool:
    return "python" in Path(script._cmdline(pid)[0] or "?").name


def cpu_snapshot(script, cluster) -> dict[str, float]:
    """CPU seconds so far of the driver (this process and its JVM), the master, and each worker's
    JVMs and Python processes. Differences of two snapshots are what a run cost each of them."""
    in_nodes = {node.name: script._namespace_pids(node.netns) for node in cluster.nodes}
    elsewhere = {p for pids in in_nodes.values() for p in pids}  # the daemons are our children too
    out = {"driver": sum(_cpu_seconds(p) for p in _descendants(os.getpid()) if p not in elsewhere)}
    for node in cluster.nodes:
        pids = in_nodes[node.name]
        if node.name == "master":
            out["master"] = sum(_cpu_seconds(p) for p in pids)
            continue
        python = [p for p in pids if _is_python(script, p)]
        out[f"{node.name} JVMs"] = sum(_cpu_seconds(p) for p in pids if p not in python)
        out[f"{node.name} Python"] = sum(_cpu_seconds(p) for p in python)
    return out


def jvm_threads(script, cluster) -> dict[str, float]:
    """CPU seconds so far of the workers' JVM threads, by thread name (compiler, GC, task threads...)."""
    out: dict[str, float] = {}
    for node in cluster.workers:
        for pid in script._namespace_pids(node.netns):
            if _is_python(script, pid):
                continue
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    name = (task / "comm").read_text().strip().rstrip("0123456789").strip() or "?"
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                key = f"{node.name} {name}"
                out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def check_pinned(script, cluster) -> int:
    """Every thread of every process in each pinned worker's namespace may run on its CPUs only;
    returns how many Python processes (executors' Python workers) were among them."""
    pythons = 0
    for node in cluster.nodes:
        if node.cpus is None:
            continue
        for pid in script._namespace_pids(node.netns):
            pythons += node.name != "master" and _is_python(script, pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    allowed = script.cpus_allowed(int(task.name))
                except OSError:  # the thread has ended
                    continue
                if allowed != node.cpus:
                    raise AssertionError(
                        f"{node.name}: thread {task.name} of {pid} ({script._cmdline(pid)[0]}) "
                        f"may run on CPUs {allowed}, not only {node.cpus}"
                    )
    return pythons


# -- one cluster run -----------------------------------------------------------------------------------
@dataclass
class Run:
    rates: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per part, all timed runs together
    partitions: int = 0


def cluster_rates(
    script,
    cluster,
    environment: Path,
    folder: Path,
    model: str,
    batch_size: int,
    repeats: int,
    partition_mb: float,
    conf: dict[str, str],
) -> Run:
    from pyspark.ml import Pipeline

    import sparkvision
    from sparkvision.annotator import EfficientNetForImageClassification
    from sparkvision.base import ImageAssembler, read_images

    executors = len(cluster.workers)
    tag = f"[{executors} worker(s)]"
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
            "spark.sql.files.maxPartitionBytes": str(int(partition_mb * 1024 * 1024)),
            **conf,
        },
    )
    spark.sparkContext.setLogLevel("ERROR")
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus
    while status().size() - 1 < executors:
        time.sleep(0.2)
    print(f"{tag} session and {executors} executor(s) up: {time.perf_counter() - started:.1f} s")
    files = sorted(folder.glob("*.jpg"))
    stage = EfficientNetForImageClassification.pretrained(model).setInputCols(["image_assembler"])
    pipeline = Pipeline().setStages([ImageAssembler().setInputCol("content"), stage.setBatchSize(batch_size)])

    def run(frame) -> float:
        begun = time.perf_counter()
        pipeline.fit(frame).transform(frame).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - begun

    warm = run(read_images(spark, [str(p) for p in files[: 8 * executors]]).repartition(2 * executors))
    print(f"{tag} first job (Python workers start, model shipped and loaded): {warm:.1f} s")
    if any(node.cpus for node in cluster.nodes):
        pythons = check_pinned(script, cluster)
        assert pythons >= executors, f"only {pythons} Python processes in the workers' namespaces"
        print(f"{tag} pinned: " + ", ".join(f"{n.name} → CPU {n.cpus}" for n in cluster.nodes) + ", checked")
    frame = read_images(spark, str(folder), glob="*.jpg")
    partitions = frame.rdd.getNumPartitions()
    print(f"{tag} partitions: {partitions}")
    before, threads_before = cpu_snapshot(script, cluster), jvm_threads(script, cluster)
    timed = [run(read_images(spark, str(folder), glob="*.jpg")) for _ in range(repeats)]
    rates = [len(files) / seconds for seconds in timed]
    after, threads_after = cpu_snapshot(script, cluster), jvm_threads(script, cluster)
    threads = {k: v - threads_before.get(k, 0.0) for k, v in threads_after.items()}
    if any(node.cpus for node in cluster.nodes):
        check_pinned(script, cluster)  # still so after the timed runs
    cpu = {part: after[part] - before.get(part, 0.0) for part in after}
    print(f"{tag} " + ", ".join(f"{r:.1f}" for r in rates) + " img/s")
    images = len(files) * repeats
    share = {w.name: (cpu[f"{w.name} JVMs"] + cpu[f"{w.name} Python"]) / sum(timed) for w in cluster.workers}
    print(f"{tag} share of its CPU each worker got: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    print(f"{tag} CPU ms per image: " + ", ".join(f"{k} {1000 * v / images:.1f}" for k, v in cpu.items()))
    busiest = sorted(threads.items(), key=lambda kv: -kv[1])[:8]
    print(
        f"{tag} JVM threads, CPU ms per image: "
        + ", ".join(f"{k} {1000 * v / images:.2f}" for k, v in busiest)
    )
    spark.stop()
    script.clean_finished_applications(cluster)
    return Run(rates, cpu, partitions)


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
    parser.add_argument(
        "--partition-mb", type=float, default=16, help="spark.sql.files.maxPartitionBytes, in MiB"
    )
    parser.add_argument(
        "--pin-cores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each worker on a CPU of its own, the embedded run on CPU 0 [on]",
    )
    parser.add_argument(
        "--driver-cpu",
        choices=("last", "any"),
        default="last",
        help="with --pin-cores: the driver (this process and its JVM) on the last CPU, or anywhere",
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="more Spark settings"
    )
    parser.add_argument(
        "--environment", type=Path, default=None, help="a packed environment (else built once)"
    )
    parser.add_argument("--workers", default="1,2", help="cluster sizes to run [%(default)s]")
    parser.add_argument("--skip-embedded", action="store_true", help="do not measure (a)")
    parser.add_argument("--state", type=Path, default=ROOT / "bench-data" / "cluster-state")
    parser.add_argument("--embedded-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.embedded_only:  # the child process of embedded_pinned()
        rates = embedded_one_core(args.folder, args.model, args.batch_size, args.repeats)
        print(json.dumps({"rates": rates}))
        return
    if args.pin_cores and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin-cores needs at least 2 CPUs")
    conf = dict(item.split("=", 1) for item in args.conf)
    folder = args.folder or make_jpeg_folder(args.count, min_side=args.min_side, max_side=args.max_side)
    count = len(list(folder.glob("*.jpg")))
    cpus = sorted(os.sched_getaffinity(0))
    print(f"{count} JPEGs in {folder}; CPUs {cpus}; load average {os.getloadavg()[0]:.2f}")
    environment = args.environment
    if environment is None:
        from sparkvision.spark.cluster import pack_env

        environment = ROOT / "bench-data" / "sparkvision-env.tar.gz"
        if not environment.exists():
            began = time.perf_counter()
            pack_env(environment, compress_level=1)
            print(f"packed the environment: {time.perf_counter() - began:.0f} s")

    ceiling = None
    if not args.skip_embedded:
        first_cpu = cpus[0] if args.pin_cores else None
        ceiling = statistics.median(
            embedded_pinned(first_cpu, folder, args.model, args.batch_size, args.repeats)
        )
        print(f"embedded, 1 core{f' (CPU {first_cpu})' if args.pin_cores else ''}: {ceiling:.1f} img/s")
    driver_cpus = {cpus[-1]} if args.pin_cores and args.driver_cpu == "last" else set(cpus)
    print(f"driver on CPUs {sorted(driver_cpus)}")
    script = _cluster_script()
    runs: dict[int, Run] = {}
    try:
        for n in (int(w) for w in args.workers.split(",")):
            began = time.perf_counter()
            cluster = script.up(args.state, workers=n, cores=1, memory="2g", pin_cores=args.pin_cores)
            print(f"[{n} worker(s)] cluster up: {time.perf_counter() - began:.1f} s")
            os.sched_setaffinity(0, driver_cpus)  # before the driver's JVM starts: it inherits this
            try:
                runs[n] = cluster_rates(
                    script,
                    cluster,
                    environment,
                    folder,
                    args.model,
                    args.batch_size,
                    args.repeats,
                    args.partition_mb,
                    conf,
                )
            finally:
                os.sched_setaffinity(0, cpus)  # the next cluster's workers get CPUs of their own
    finally:
        script.down(args.state)

    rates = {n: statistics.median(run.rates) for n, run in runs.items()}
    print(f"\nload average now {os.getloadavg()[0]:.2f}; settings {conf or 'default'}")
    print(f"{'path':<40} {'img/s':>8} {'÷ embedded 1-core':>18}")
    if ceiling:
        print(f"{'(a) embedded, 1 core':<40} {ceiling:8.1f} {1.0:18.2f}")
    for n, label in ((1, "(b) cluster, 1 worker × 1 core"), (2, "(c) cluster, 2 workers × 1 core")):
        if n in rates:
            versus = f"{rates[n] / ceiling:18.2f}" if ceiling else ""
            print(f"{label:<40} {rates[n]:8.1f} {versus}")
    if 1 in rates and 2 in rates:
        efficiency = rates[2] / (2 * rates[1])
        print(f"\nefficiency = rate(2) / (2 · rate(1)) = {efficiency:.2f}  (target ≥ 0.85)")
        work = {n: 1000 * sum(run.cpu.values()) / (count * args.repeats) for n, run in runs.items()}
        print(
            f"CPU ms per image, all parts: 1 worker {work[1]:.1f}, 2 workers {work[2]:.1f} "
            f"(work efficiency {work[1] / work[2]:.2f}: what 2 workers spend per image vs 1; "
            "the rest of the gap is CPU they did not get)"
        )
        per_day = 100e6 / 86400
        print(
            f"100 M images/day = {per_day:.0f} img/s: ≈ {per_day / (rates[2] / 2):.0f} 1-core workers at "
            f"this 2-worker rate"
            + (f" ({per_day / ceiling:.0f} at the embedded 1-core ceiling)" if ceiling else "")
        )


if __name__ == "__main__":
    main()
