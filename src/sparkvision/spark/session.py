"""``sparkvision.start()``: a SparkSession configured for image classification.

Like ``sparknlp.start()``, one call gives a ready session. What it sets, and why:

* ``master`` — ``local[*]`` by default (every core of this machine); any master URL works.
* ``spark.driver.memory`` — ``memory``; only effective when this call starts the JVM.
* Arrow for pandas conversions (our stages exchange images with Python workers through Arrow).
* ``spark.sql.files.openCostInBytes`` = 256 KiB (Spark's default is 4 MiB). File sources pack files
  into partitions counting this cost per file; with the default, a folder of photos is cut into
  partitions of ~30 files whatever its size, and each task's start-up then costs more than 10 % of
  the throughput on 2 cores. Images are few, small and expensive per byte: with 256 KiB a small folder
  gets one partition per core and a large one partitions of a few hundred files.
* For local masters (``local``, ``local[N]``, ``local-cluster[...]``), the Python workers use this very
  interpreter (``spark.pyspark.python``), so the installed ``sparkvision`` is importable there, and
  ``local-cluster`` executors get this interpreter's import path (``spark.executorEnv.PYTHONPATH``).

* ``environment`` — a packed environment (``sparkvision cluster pack-env``, see :mod:`.cluster`) for
  a real cluster, whose nodes' Python lacks sparkvision: shipped with ``spark.archives`` and used by
  the executors' Python workers as ``./environment/bin/python``. See the README's cluster guide.

If a session is already running, it is returned as is (Spark's ``getOrCreate``) with the runtime
SQL settings applied.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MASTER", "DEFAULT_MEMORY", "start"]

DEFAULT_MASTER = "local[*]"
DEFAULT_MEMORY = "4g"


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith(("local[", "local-cluster["))


def _package_root() -> str:
    """The folder that holds the ``sparkvision`` package (for executors' ``PYTHONPATH``)."""
    return str(Path(__file__).resolve().parents[2])


def start(
    master: str | None = None,
    memory: str = DEFAULT_MEMORY,
    *,
    app_name: str = "sparkvision",
    params: Mapping[str, Any] | None = None,
    environment: str | os.PathLike[str] | None = None,
    **conf: Any,
):
    """Start (or get) a SparkSession configured for sparkvision and return it.

    Args:
        master: Spark master URL; ``None`` means ``local[*]``.
        memory: driver memory, e.g. ``"4g"`` (applies when the JVM starts here).
        app_name: the application name shown by Spark.
        params: extra Spark settings, ``{"spark.executor.cores": "4", ...}`` (as in ``sparknlp.start``).
        environment: a packed Python environment for the executors (``.tar.gz``
            from ``sparkvision cluster pack-env``, a local path or a URI); also sets ``PYSPARK_PYTHON``
            for the context being started. Other ``spark.archives`` given in ``params`` are kept.
        **conf: more settings; names with dots pass through ``**{"spark.sql.shuffle.partitions": "8"}``.

    Example::

        import sparkvision
        spark = sparkvision.start()                         # local[*]
        spark = sparkvision.start("spark://head:7077", "8g", params={"spark.executor.memory": "8g"})
        spark = sparkvision.start("spark://head:7077", environment="sparkvision-env.tar.gz")
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sparkvision.start() needs PySpark: pip install 'sparkvision[spark]' (and Java 17+)"
        ) from exc

    master = master or DEFAULT_MASTER
    settings: dict[str, str] = {
        "spark.driver.memory": memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
        "spark.sql.files.openCostInBytes": str(256 * 1024),
    }
    if _is_local(master) and not os.environ.get("PYSPARK_PYTHON"):
        settings["spark.pyspark.python"] = sys.executable
        settings["spark.pyspark.driver.python"] = sys.executable
    if master.startswith("local-cluster["):
        path = [_package_root(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        settings["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    for key, value in {**(params or {}), **conf}.items():
        settings[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    if environment is not None:
        from .cluster import environment_settings

        shipped = environment_settings(environment)
        others = settings.get("spark.archives")
        if others:
            shipped["spark.archives"] = f"{others},{shipped['spark.archives']}"
        settings.update(shipped)

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if environment is None:
        return builder.getOrCreate()
    from .cluster import executor_python

    with executor_python():
        return builder.getOrCreate()
