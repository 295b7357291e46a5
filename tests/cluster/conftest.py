"""Fixtures for the cluster tests: a Spark standalone cluster in network namespaces for the module
that uses it (``scripts/test_cluster.py``), the packed environment (built once and cached).

The packed environment is cached under ``$SPARKVISION_TEST_CACHE`` (default
``~/.cache/sparkvision-tests``), keyed by a digest of ``pyproject.toml`` and ``src/``: a CI run builds
it once, later runs on an unchanged tree reuse it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
from cluster_helpers import ROOT, cluster_script

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
pytest.importorskip("venv_pack")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Master + two 1-core workers, each in its own network namespace; worker 1 pinned to the first
    CPU, worker 2 to the second (the first too on a 1-CPU machine), the master to the last; the
    driver on the bridge, unpinned."""
    state = tmp_path_factory.mktemp("cluster")
    try:
        running = cluster_script.up(state, workers=2, cores=1, memory="2g", pin_cores=True)
    except cluster_script.ClusterUnavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    try:
        yield running
    finally:
        cluster_script.down(state, keep_logs=True)


def _source_digest() -> str:
    digest = hashlib.sha256(f"{sys.version}\0".encode())
    from sparkvision.spark.cluster import DEFAULT_EXCLUDES

    digest.update(repr(DEFAULT_EXCLUDES).encode())
    for path in [ROOT / "pyproject.toml", *sorted((ROOT / "src").rglob("*"))]:
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
            digest.update(f"\0{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def packed_env() -> Path:
    """``sparkvision cluster pack-env`` — the README's command — built once per source tree."""
    from click.testing import CliRunner

    from sparkvision.cli import cli

    cache = Path(os.environ.get("SPARKVISION_TEST_CACHE", Path.home() / ".cache" / "sparkvision-tests"))
    archive = cache / f"sparkvision-env-{_source_digest()}.tar.gz"
    if not archive.is_file():
        for old in cache.glob("sparkvision-env-*.tar.gz"):
            old.unlink()
        result = CliRunner().invoke(
            cli, ["cluster", "pack-env", str(archive), "--compress-level", "1"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
    return archive


@pytest.fixture(scope="session")
def lite0_dir() -> Path:
    """The default model, converted into this session's cache on the driver's side only."""
    from sparkvision import Classifier

    return Path(Classifier.pretrained("efficientnet_lite0").model_dir)
