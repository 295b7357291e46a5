"""Getting a model directory to the executors, and model directories in and out of Hadoop paths.

Executors may share no filesystem with the driver, so the classifier stage ships its model directory
with the job: the directory is stored (uncompressed: ONNX weights do not compress) in a zip archive
handed to ``SparkContext.addArchive``; every executor fetches it once from the driver, unpacks it
into its own work directory, and finds it with ``SparkFiles.get(name)``. (``addFile`` would take a
directory only with a local master.) The name is derived from the directory's path and file stamps,
so two models never collide (every model directory is called ``model`` in a saved pipeline, for
instance) and a changed model gets a new name. Each model is shipped once per SparkContext.

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
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFormatError
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


def _archive(model_dir: Path, target: Path) -> None:
    """Write ``model_dir``'s files into the zip ``target`` (atomically: a partial file never shows)."""
    root = model_dir.resolve()
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(root).as_posix())
    os.replace(partial, target)


def ship_model_dir(spark: Any, model_dir: str | Path) -> str:
    """Make ``model_dir`` available to every executor; returns the name for ``SparkFiles.get``."""
    model_dir = Path(model_dir)
    if not is_model_dir(model_dir):
        raise ModelFormatError(f"{model_dir} is not a sparkvision model directory")
    try:
        context = spark.sparkContext
    except Exception as exc:  # Spark Connect sessions have no SparkContext
        raise ConfigError(
            "sparkvision's stages need a classic SparkSession (with a SparkContext); Spark Connect is "
            "not supported yet"
        ) from exc
    name = f"sparkvision-model-{model_fingerprint(model_dir)}.zip"
    key = (context.applicationId, name)
    with _LOCK:
        if key in _SHIPPED:
            return name
        staged = _staging_root() / name
        if not staged.exists():
            _archive(model_dir, staged)
        context.addArchive(str(staged))
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
