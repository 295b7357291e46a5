"""Getting a model directory to the executors, and model directories in and out of Hadoop paths.

Executors may share no filesystem with the driver, so the classifier stage adds its model directory
to the job with ``SparkContext.addFile(dir, recursive=True)``; executors fetch it once (from the
driver's file server) into their work directory and find it with ``SparkFiles.get(name)``. The name is
derived from the directory's path and file stamps, so two models never collide (every cached model
directory is called ``model`` in a saved pipeline, for instance) and a changed model gets a new name.
Each directory is shipped once per SparkContext.

:func:`copy_model_to` / :func:`local_model_from` move a model directory to and from any Hadoop
filesystem path (``hdfs://``, ``s3a://``, ``file:``...), for pipeline persistence and
``loadSavedModel``; a local path is handled with plain file copies.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from ..models.store import is_model_dir

__all__ = ["copy_model_to", "local_model_from", "ship_model_dir"]

_SHIPPED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()
_STAGING: Path | None = None


def _staging_root() -> Path:
    """A driver-side folder holding the copies handed to ``addFile`` (removed when Python exits)."""
    global _STAGING
    if _STAGING is None:
        _STAGING = Path(tempfile.mkdtemp(prefix="sparkvision-ship-"))
        atexit.register(shutil.rmtree, _STAGING, True)
    return _STAGING


def model_fingerprint(model_dir: Path) -> str:
    """A short id of a model directory: its resolved path plus every file's size and mtime."""
    root = model_dir.resolve()
    digest = hashlib.sha256(str(root).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"\0{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no copy when the staging folder is on the same filesystem
    except OSError:
        shutil.copy2(source, target)


def ship_model_dir(spark: Any, model_dir: str | Path) -> str:
    """Make ``model_dir`` available to every executor; returns the name for ``SparkFiles.get``."""
    model_dir = Path(model_dir)
    if not is_model_dir(model_dir):
        raise ModelFormatError(f"{model_dir} is not a sparkvision model directory")
    context = spark.sparkContext
    name = f"sparkvision-model-{model_fingerprint(model_dir)}"
    key = (context.applicationId, name)
    with _LOCK:
        if key in _SHIPPED:
            return name
        staged = _staging_root() / name
        if not staged.exists():
            partial = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=_staging_root()))
            for path in model_dir.resolve().rglob("*"):
                if path.is_file():
                    _link_or_copy(path, partial / path.relative_to(model_dir.resolve()))
            os.replace(partial, staged)
        context.addFile(str(staged), recursive=True)
        _SHIPPED.add(key)
    return name


# -- Hadoop paths ---------------------------------------------------------------------------------
def _hadoop_path(spark: Any, uri: str) -> tuple[Any, Any]:
    """``(filesystem, qualified path)`` for a path as Spark would resolve it (default FS applies)."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    return fs, fs.makeQualified(path)


def _local_path(spark: Any, uri: str) -> tuple[Path | None, Any, Any]:
    fs, qualified = _hadoop_path(spark, uri)
    if fs.getScheme() == "file":
        return Path(qualified.toUri().getPath()), fs, qualified
    return None, fs, qualified


def copy_model_to(spark: Any, model_dir: str | Path, destination: str) -> None:
    """Copy a local model directory to ``destination`` (a new folder; any Hadoop filesystem)."""
    local, fs, qualified = _local_path(spark, destination)
    if local is not None:
        shutil.copytree(Path(model_dir), local)
        return
    jvm = spark._jvm
    fs.copyFromLocalFile(
        False, True, jvm.org.apache.hadoop.fs.Path(str(Path(model_dir).resolve())), qualified
    )


def local_model_from(spark: Any, location: str) -> Path:
    """A local directory holding the model at ``location``: the folder itself when it is local,
    else a fresh local copy (in a temporary folder removed when Python exits)."""
    if spark is None:
        return Path(location)
    local, fs, qualified = _local_path(spark, location)
    if local is not None:
        return local
    target = Path(tempfile.mkdtemp(prefix="sparkvision-model-")) / "model"
    atexit.register(shutil.rmtree, target.parent, True)
    jvm = spark._jvm
    fs.copyToLocalFile(False, qualified, jvm.org.apache.hadoop.fs.Path(str(target)), True)
    return target
