#!/usr/bin/env python3
"""A Spark standalone cluster on one Linux machine, each node in its own network namespace.

    sudo python scripts/test_cluster.py up [--workers 2] [--cores 1] [--memory 2g] [--pin-cores]
    sudo python scripts/test_cluster.py status
    sudo python scripts/test_cluster.py down

``up`` makes a bridge with a private /24 (``10.213.47.0/24`` unless ``SPARKVISION_CLUSTER_NET`` names
another three-octet prefix), one network namespace per node joined to it by a veth pair, and starts a
Spark master and the workers there with Spark's own launcher (``bin/spark-class
org.apache.spark.deploy.master.Master`` / ``...worker.Worker``, from the installed PySpark). The
driver stays in this (root) namespace on the bridge's address, ``.1``; the master is ``.10`` and
worker *i* is ``.1i``, so executors reach the driver over a network, never over the loopback.

Each worker is a stranger to this machine's Python setup, as a real node would be: its own work
directory, an empty ``HOME`` and ``SPARKVISION_HOME`` (no model cache), and a ``PATH`` whose
``python3`` is a bare virtualenv without sparkvision. Jobs must ship their Python environment and
their models through Spark.

Executors' work directories (and, for drivers that set ``SPARK_LOCAL_DIRS`` / ``java.io.tmpdir``
to ``Cluster.driver_local_dir``, the drivers' copies of shipped archives) live on a tmpfs
(``--tmpfs 4g``; ``--tmpfs ''`` for plain folders): every application unpacks the packed Python
environment once per executor, and deleting those files from a disk mounted with ``discard`` took
minutes.

``--pin-cores`` makes each worker a host with its own CPU(s): worker *i*'s whole process tree (the
worker JVM, the executor JVMs it starts and their Python workers, which inherit the affinity) may run
only on the *i*-th CPU this script may use (``--cores`` consecutive CPUs each, wrapping around when
there are fewer), and the master on the last one. The driver is not a node of this script: the
caller decides where it runs. Without the flag, every process may run on every CPU, so a busy worker
borrows the idle cores of the machine, which a real 1-core host cannot.

``up`` prints the cluster as JSON (master URL, driver address, nodes) and waits until the master
reports every worker alive. ``down`` kills every process in the namespaces and removes namespaces,
bridge and work directories; it is safe to run at any time, and ``up`` runs it first, so a run that
died half-way is cleaned up by the next one. Needs root (CAP_NET_ADMIN) and iproute2; stdlib only.
Only the cluster's own addresses and the loopback are ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NET = os.environ.get("SPARKVISION_CLUSTER_NET", "10.213.47")
PREFIX = "svc"  # namespaces, bridge and veth ends are named svc-...
BRIDGE = f"{PREFIX}-br0"
DEFAULT_STATE = Path(os.environ.get("SPARKVISION_CLUSTER_STATE", "/tmp/sparkvision-cluster"))
SCRATCH_SOURCE = "sparkvision-cluster"  # the tmpfs's device name, how down finds its mounts
DEFAULT_SCRATCH_TMPFS = os.environ.get("SPARKVISION_CLUSTER_TMPFS", "4g") or None
MASTER_PORT = 7077
MASTER_UI_PORT = 8080
WORKER_UI_PORT = 8081
EXIT_UNAVAILABLE = 3  # namespaces cannot be created here (not root, no iproute2, no CAP_NET_ADMIN)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ClusterUnavailable(RuntimeError):
    """This machine cannot host the cluster: network namespaces cannot be created."""


@dataclass
class Node:
    """One host of the cluster: a namespace, its address, its Spark daemon and its folders."""

    name: str  # master, worker1, worker2...
    netns: str
    address: str
    veth: str  # the host end on the bridge
    root: str  # this node's folder: home/, sparkvision-home/, daemon.log (work dir: Cluster.work_dir)
    pid: int | None = None
    cpus: list[int] | None = None  # the CPUs its processes may run on (None: any)

    @property
    def log(self) -> Path:
        return Path(self.root) / "daemon.log"


@dataclass
class Cluster:
    state_dir: str
    net: str
    driver_host: str
    master_url: str
    master_ui: str
    spark_home: str
    scratch: str  # executors' work dirs and drivers' local dirs (a tmpfs when one could be mounted)
    nodes: list[Node] = field(default_factory=list)

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.name.startswith("worker")]

    @property
    def driver_local_dir(self) -> Path:
        """For a driver's ``SPARK_LOCAL_DIRS``: where it unpacks its copy of shipped archives."""
        return Path(self.scratch) / "driver"

    def work_dir(self, node: Node) -> Path:
        return Path(self.scratch) / node.name

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "workers": [asdict(n) for n in self.workers]}


# -- shell helpers -----------------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {completed.stderr.strip()}")
    return completed


def _our_namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(f"{PREFIX}-")]


def _namespace_pids(netns: str) -> list[int]:
    out = _ip("netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def spark_home() -> Path:
    """The Spark distribution inside the installed PySpark package (its ``bin/spark-class``)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterUnavailable("PySpark is not installed: pip install 'sparkvision[spark]'")
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").is_file():
        raise ClusterUnavailable(f"{home} has no bin/spark-class")
    return home


def _check_subnet_free(net: str) -> None:
    """Refuse a /24 that any interface or route of this machine already uses (our bridge aside)."""
    ours = ipaddress.ip_network(f"{net}.0/24")
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if parts[1] == BRIDGE:
            continue
        iface = ipaddress.ip_interface(parts[3])
        if iface.network.overlaps(ours):
            raise RuntimeError(f"{ours} overlaps {parts[3]} on {parts[1]}: set SPARKVISION_CLUSTER_NET")
    for line in _ip("-4", "route", "show").stdout.splitlines():
        dest = line.split()[0]
        if dest != "default" and f"dev {BRIDGE}" not in line and ipaddress.ip_network(dest).overlaps(ours):
            raise RuntimeError(f"{ours} overlaps route {line!r}: set SPARKVISION_CLUSTER_NET")


# -- up ----------------------------------------------------------------------------------------------
def _mount_scratch(scratch: Path, size: str | None) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    if size:
        completed = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", SCRATCH_SOURCE, str(scratch)],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            print(
                f"no tmpfs for the scratch folder ({completed.stderr.strip()}): using disk", file=sys.stderr
            )


def _unmount_scratch() -> None:
    """Unmount every scratch tmpfs of ours (this cluster's, and any that a run that died left)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            source, target, fstype = line.split()[:3]
            if source == SCRATCH_SOURCE and fstype == "tmpfs":
                subprocess.run(["umount", "--lazy", target.replace("\\040", " ")], check=False)


def clean_finished_applications(cluster: Cluster) -> None:
    """Delete the work folders of applications that have ended (call it between applications)."""
    try:
        running = {a["id"] for a in master_status(cluster).get("activeapps", [])}
    except OSError:
        return
    for worker in cluster.workers:
        for app_dir in cluster.work_dir(worker).glob("app-*"):
            if app_dir.name not in running:
                shutil.rmtree(app_dir, ignore_errors=True)
    for local in cluster.driver_local_dir.glob("*"):  # left behind by a driver that was killed
        if local.name.startswith(("spark-", "blockmgr-")):
            shutil.rmtree(local, ignore_errors=True)


def _make_network(cluster: Cluster) -> None:
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
    except RuntimeError as exc:
        raise ClusterUnavailable(f"cannot create a bridge ({exc}); run as root with CAP_NET_ADMIN") from exc
    _ip("addr", "add", f"{cluster.driver_host}/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for node in cluster.nodes:
        try:
            _ip("netns", "add", node.netns)
        except RuntimeError as exc:
            raise ClusterUnavailable(f"cannot create network namespaces ({exc})") from exc
        inner = f"{node.veth}p"
        _ip("link", "add", node.veth, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", node.netns)
        _ip("-n", node.netns, "link", "set", inner, "name", "eth0")
        _ip("link", "set", node.veth, "master", BRIDGE, "up")
        _ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
        _ip("-n", node.netns, "link", "set", "eth0", "up")
        _ip("-n", node.netns, "link", "set", "lo", "up")


def _bare_python(state: Path) -> Path:
    """A virtualenv with no packages at all: the ``python3`` a fresh node has on its PATH."""
    venv = state / "bare-python"
    subprocess.run(
        [getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)],
        check=True,
    )
    return venv / "bin"


def _node_env(cluster: Cluster, node: Node, bare_bin: Path) -> dict[str, str]:
    root = Path(node.root)
    for sub in ("home", "sparkvision-home", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster.work_dir(node).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{bare_bin}:{SYSTEM_PATH}",
        "HOME": str(root / "home"),
        "SPARKVISION_HOME": str(root / "sparkvision-home"),
        "SPARK_HOME": cluster.spark_home,
        "SPARK_CONF_DIR": str(Path(cluster.state_dir) / "conf"),  # empty: Spark's defaults
        "SPARK_LOCAL_IP": node.address,
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_WORKER_DIR": str(cluster.work_dir(node)),
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
    }
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return env


def node_cpus(count: int, cores: int, available: list[int] | None = None) -> list[list[int]]:
    """The CPUs of ``count`` workers with ``cores`` CPUs each: consecutive CPUs among ``available``
    (default: those this process may use), wrapping around when there are not enough."""
    cpus = sorted(available if available is not None else os.sched_getaffinity(0))
    width = min(cores, len(cpus))
    return [[cpus[(i * width + j) % len(cpus)] for j in range(width)] for i in range(count)]


def cpus_allowed(pid: int) -> list[int]:
    """The CPUs process ``pid`` may run on (``Cpus_allowed_list`` in ``/proc/PID/status``)."""
    return sorted(os.sched_getaffinity(pid))


def _start_daemon(cluster: Cluster, node: Node, args: list[str], env: dict[str, str]) -> None:
    spark_class = str(Path(cluster.spark_home) / "bin" / "spark-class")
    cpus = node.cpus

    def pin() -> None:  # in the child, before exec: everything it starts inherits the affinity
        os.sched_setaffinity(0, cpus or [])

    with open(node.log, "ab") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, spark_class, *args],
            env=env,
            cwd=node.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: down kills it with everything it starts
            preexec_fn=pin if cpus is not None else None,
        )
    node.pid = process.pid


def _fetch_json(url: str, timeout: float = 2.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    with opener.open(url, timeout=timeout) as response:
        return json.load(response)


def master_status(cluster: Cluster) -> dict[str, Any]:
    """The master's own JSON status page (workers, applications)."""
    return _fetch_json(f"{cluster.master_ui}/json/")


def worker_status(worker: Node) -> dict[str, Any]:
    """A worker's JSON status page (its executors and their applications)."""
    return _fetch_json(f"http://{worker.address}:{WORKER_UI_PORT}/json/")


def _log_tail(node: Node, lines: int = 30) -> str:
    try:
        return "\n".join(node.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    expected = {w.address for w in cluster.workers}
    last = "no answer"
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            if node.pid is None or not _alive(node.pid):
                raise RuntimeError(f"{node.name} exited during start-up:\n{_log_tail(node)}")
        try:
            status = master_status(cluster)
            alive = {w["host"] for w in status.get("workers", []) if w.get("state") == "ALIVE"}
            if expected <= alive:
                return
            last = f"alive workers: {sorted(alive)}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"cluster not ready after {timeout:.0f} s ({last})")


def up(
    state_dir: Path = DEFAULT_STATE,
    *,
    workers: int = 2,
    cores: int = 1,
    memory: str = "2g",
    timeout: float = 120.0,
    scratch_tmpfs: str | None = DEFAULT_SCRATCH_TMPFS,
    pin_cores: bool = False,
) -> Cluster:
    """Start the cluster (after cleaning up any earlier one) and return it once every worker is alive.

    ``scratch_tmpfs``: the size of a tmpfs mounted for the executors' work directories and the
    drivers' local directories (``None``: plain folders). Every application unpacks the shipped
    environment once per executor and once on the driver, several hundred MB of small files each:
    in memory, writing and deleting them costs nothing, where a disk mounted with ``discard`` spends
    minutes deleting them.

    ``pin_cores``: give worker *i* (its JVM, its executors and their Python workers) CPUs of its own,
    :func:`node_cpus`, and the master the last CPU; each node's ``cpus`` says which.

    Raises :class:`ClusterUnavailable` where network namespaces cannot be created.
    """
    if not 1 <= workers <= 8:
        raise ValueError("workers: 1 to 8")
    if sys.platform != "linux" or shutil.which("ip") is None:
        raise ClusterUnavailable("needs Linux with iproute2 ('ip')")
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to create network namespaces")
    down(state_dir)
    _check_subnet_free(NET)
    state_dir = state_dir.resolve()
    (state_dir / "conf").mkdir(parents=True, exist_ok=True)
    master = Node("master", f"{PREFIX}-master", f"{NET}.10", f"{PREFIX}-m", str(state_dir / "master"))
    cluster = Cluster(
        state_dir=str(state_dir),
        net=f"{NET}.0/24",
        driver_host=f"{NET}.1",
        master_url=f"spark://{master.address}:{MASTER_PORT}",
        master_ui=f"http://{master.address}:{MASTER_UI_PORT}",
        spark_home=str(spark_home()),
        scratch=str(state_dir / "scratch"),
        nodes=[master]
        + [
            Node(
                f"worker{i}",
                f"{PREFIX}-worker{i}",
                f"{NET}.{10 + i}",
                f"{PREFIX}-w{i}",
                str(state_dir / f"worker{i}"),
            )
            for i in range(1, workers + 1)
        ],
    )
    if pin_cores:
        for node, cpus in zip(cluster.workers, node_cpus(workers, cores)):
            node.cpus = cpus
        master.cpus = [max(os.sched_getaffinity(0))]
    try:
        _mount_scratch(Path(cluster.scratch), scratch_tmpfs)
        cluster.driver_local_dir.mkdir(parents=True, exist_ok=True)
        _make_network(cluster)
        bare_bin = _bare_python(state_dir)
        _start_daemon(
            cluster,
            master,
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                master.address,
                "--port",
                str(MASTER_PORT),
                "--webui-port",
                str(MASTER_UI_PORT),
            ],
            _node_env(cluster, master, bare_bin),
        )
        for node in cluster.workers:
            _start_daemon(
                cluster,
                node,
                [
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    node.address,
                    "--cores",
                    str(cores),
                    "--memory",
                    memory,
                    "--work-dir",
                    str(cluster.work_dir(node)),
                    "--webui-port",
                    str(WORKER_UI_PORT),
                    cluster.master_url,
                ],
                _node_env(cluster, node, bare_bin),
            )
        _save(cluster)
        _wait_ready(cluster, timeout)
    except BaseException:
        _save(cluster)
        down(state_dir, keep_logs=True)
        raise
    return cluster


def _save(cluster: Cluster) -> None:
    path = Path(cluster.state_dir) / "cluster.json"
    path.write_text(json.dumps(cluster.to_json(), indent=2))


def load(state_dir: Path = DEFAULT_STATE) -> Cluster | None:
    """The cluster recorded in ``state_dir`` (whether or not it is still running)."""
    path = state_dir / "cluster.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data.pop("workers", None)
    data.setdefault("scratch", str(state_dir / "scratch"))
    nodes = [Node(**n) for n in data.pop("nodes")]
    return Cluster(**data, nodes=nodes)


# -- down --------------------------------------------------------------------------------------------
def _kill_all(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def down(state_dir: Path = DEFAULT_STATE, *, keep_logs: bool = False) -> None:
    """Stop everything the cluster started and remove its namespaces, bridge and folders."""
    cluster = load(state_dir)
    daemons = [n.pid for n in (cluster.nodes if cluster else []) if n.pid]
    # only our daemons (a recycled process id would not be running a Spark daemon)
    _kill_all(
        [p for p in daemons if _alive(p) and any("org.apache.spark.deploy" in a for a in _cmdline(p))], 5.0
    )
    for netns in _our_namespaces():  # executors, Python workers: whatever still runs in there
        stragglers = _namespace_pids(netns)
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in stragglers):
            time.sleep(0.1)
        _ip("netns", "del", netns, check=False)
    if shutil.which("ip"):
        _ip("link", "del", BRIDGE, check=False)
        for line in _ip("-o", "link", "show").stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(f"{PREFIX}-"):
                _ip("link", "del", name, check=False)
    _unmount_scratch()
    if cluster is not None and Path(cluster.state_dir).is_dir():
        shutil.rmtree(cluster.scratch, ignore_errors=True)
        for node in cluster.nodes:
            root = Path(node.root)
            for sub in ("home", "sparkvision-home", "tmp"):
                shutil.rmtree(root / sub, ignore_errors=True)
            if not keep_logs:
                shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(Path(cluster.state_dir) / "bare-python", ignore_errors=True)
        if not keep_logs:
            (Path(cluster.state_dir) / "cluster.json").unlink(missing_ok=True)


# -- status and helpers for tests ---------------------------------------------------------------------
def executor_pids(worker: Node) -> list[int]:
    """The executor JVMs running on ``worker`` (``CoarseGrainedExecutorBackend`` in its namespace)."""
    return [
        pid
        for pid in _namespace_pids(worker.netns)
        if any("CoarseGrainedExecutorBackend" in part for part in _cmdline(pid))
    ]


def status(state_dir: Path = DEFAULT_STATE) -> dict[str, Any]:
    cluster = load(state_dir)
    namespaces = _our_namespaces()
    if cluster is None:
        return {"up": False, "namespaces": namespaces}
    nodes = [
        {
            "name": n.name,
            "address": n.address,
            "pid": n.pid,
            "alive": bool(n.pid and _alive(n.pid)),
            "cpus": n.cpus,
        }
        for n in cluster.nodes
    ]
    report: dict[str, Any] = {"up": all(n["alive"] for n in nodes), **cluster.to_json(), "nodes": nodes}
    report["namespaces"] = namespaces
    try:
        master = master_status(cluster)
        report["alive_workers"] = [w["host"] for w in master["workers"] if w["state"] == "ALIVE"]
        report["applications"] = [a["id"] for a in master.get("activeapps", [])]
    except OSError as exc:
        report["master_error"] = str(exc)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state folder [%(default)s]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="2g", help="memory per worker for executors")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the workers")
    parser.add_argument(
        "--tmpfs",
        default=DEFAULT_SCRATCH_TMPFS or "",
        help="size of the tmpfs for executors' work dirs and drivers' local dirs, '' for disk [%(default)s]",
    )
    parser.add_argument(
        "--pin-cores",
        action="store_true",
        help="run each worker's processes on CPUs of its own (--cores each), the master on the last CPU",
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        try:
            cluster = up(
                args.state,
                workers=args.workers,
                cores=args.cores,
                memory=args.memory,
                timeout=args.timeout,
                scratch_tmpfs=args.tmpfs or None,
                pin_cores=args.pin_cores,
            )
        except ClusterUnavailable as exc:
            print(f"cluster unavailable: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(json.dumps(cluster.to_json(), indent=2))
    elif args.command == "down":
        down(args.state)
    else:
        report = status(args.state)
        print(json.dumps(report, indent=2))
        return 0 if report["up"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
