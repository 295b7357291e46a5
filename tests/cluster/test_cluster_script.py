"""``scripts/test_cluster.py`` cleans up after itself, even when a start fails half-way."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cluster_helpers import cluster_script

pytestmark = pytest.mark.cluster


def _leftovers(state: Path) -> dict[str, list[str]]:
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(state) in cmdline:
                processes.append(f"{entry.name}: {cmdline[:120]}")
    links = [line for line in os.popen("ip -o link show").read().splitlines() if " svc-" in line]
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(state) in line]
    return {
        "namespaces": cluster_script._our_namespaces(),
        "links": links,
        "mounts": mounts,
        "processes": processes,
    }


def test_a_start_that_fails_leaves_no_process_namespace_link_or_mount(tmp_path: Path):
    state = tmp_path / "state"
    try:
        with pytest.raises(RuntimeError, match="not ready"):
            cluster_script.up(state, workers=1, timeout=0.5)  # the JVMs cannot be up in half a second
    except cluster_script.ClusterUnavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    deadline = time.monotonic() + 10
    while any(_leftovers(state).values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(state) == {"namespaces": [], "links": [], "mounts": [], "processes": []}
    assert (state / "master" / "daemon.log").is_file()  # the logs stay, to see what went wrong


def test_pinned_workers_get_cpus_of_their_own_wrapping_when_there_are_too_few():
    assert cluster_script.node_cpus(2, 1, [0, 1]) == [[0], [1]]
    assert cluster_script.node_cpus(2, 2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert cluster_script.node_cpus(3, 1, [4, 6]) == [[4], [6], [4]]
    assert cluster_script.node_cpus(2, 2, [5]) == [[5], [5]]
