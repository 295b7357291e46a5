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
  interpreter, so the installed ``sparkvision`` is importable there whatever ``PATH`` says (a venv's
  python run without activating the venv: Jupyter kernels, cron, IDEs). PySpark takes the workers'
  interpreter from the ``PYSPARK_PYTHON`` environment variable when the SparkContext starts (default
  ``python3`` from ``PATH``), so that is what is set, unless the caller set it already; and
  ``local-cluster`` executors get this interpreter's import path (``spark.executorEnv.PYTHONPATH``).

* ``environment`` — a packed environment (``sparkvision cluster pack-env``, see :mod:`.cluster`) for
  a real cluster, whose nodes' Python lacks sparkvision: shipped with ``spark.archives`` and used by
  the executors' Python workers as ``./environment/bin/python``. See the README's cluster guide.

If a session is already running, it is returned as is (Spark's ``getOrCreate``) with the runtime
SQL settings applied.

``sparknlp.start()``'s keyword arguments are accepted: ``memory`` and ``params`` as there,
``cache_folder`` sets the model cache (``SPARKVISION_HOME``; only the driver reads it, executors get
models shipped with the job), ``params={"spark.driver.cores": N}`` without a master means ``local[N]`` as in Spark NLP;
``gpu``, ``apple_silicon``, ``aarch64``, ``log_folder``, ``cluster_tmp_dir``, ``real_time_output``
and ``output_level`` choose Spark NLP's JVM packages and logging, which do not exist here: they are
accepted with a one-line warning when set to anything but Spark NLP's default.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MASTER", "DEFAULT_MEMORY", "start"]

DEFAULT_MASTER = "local[*]"
DEFAULT_MEMORY = "4g"
#: Environment variables this module set (so that a later cluster start can take them back).
_OURS: dict[str, str] = {}


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith(("local[", "local-cluster["))


def _package_root() -> str:
    """The folder that holds the ``sparkvision`` package (for executors' ``PYTHONPATH``)."""
    return str(Path(__file__).resolve().parents[2])


#: ``sparknlp.start()`` arguments with no meaning here, and Spark NLP's default for each (no warning).
_SPARK_NLP_ONLY: dict[str, Any] = {
    "gpu": False,
    "apple_silicon": False,
    "aarch64": False,
    "log_folder": "",
    "cluster_tmp_dir": "",
    "real_time_output": False,
    "output_level": 1,
}
_WHY_IGNORED = {
    "gpu": "sparkvision runs ONNX Runtime on the CPU",
    "apple_silicon": "sparkvision has no JVM package to choose",
    "aarch64": "sparkvision has no JVM package to choose",
    "log_folder": "sparkvision's stages write no training logs there",
    "cluster_tmp_dir": "sparkvision ships models with SparkContext.addArchive and needs no cluster temp dir",
    "real_time_output": "Spark's own log settings apply",
    "output_level": "Spark's own log settings apply",
}


def _spark_nlp_arguments(master: Any, options: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Warn about ``sparknlp.start()`` arguments that mean nothing here; return the master and the rest.

    ``sparknlp.start(True)`` passes ``gpu`` positionally: a bool master is taken as that.
    """
    if isinstance(master, bool):
        options = {**options, "gpu": master}
        master = None
    for name, default in _SPARK_NLP_ONLY.items():
        if name in options and options.pop(name) != default:
            warnings.warn(f"sparkvision.start(): {name} is ignored ({_WHY_IGNORED[name]})", stacklevel=3)
    return master, options


def start(
    master: str | None = None,
    memory: str = DEFAULT_MEMORY,
    *,
    app_name: str = "sparkvision",
    params: Mapping[str, Any] | None = None,
    cache_folder: str = "",
    gpu: bool = False,
    apple_silicon: bool = False,
    aarch64: bool = False,
    log_folder: str = "",
    cluster_tmp_dir: str = "",
    real_time_output: bool = False,
    output_level: int = 1,
    environment: str | os.PathLike[str] | None = None,
    **conf: Any,
):
    """Start (or get) a SparkSession configured for sparkvision and return it.

    Args:
        master: Spark master URL; ``None`` means ``local[*]``.
        memory: driver memory, e.g. ``"4g"`` (applies when the JVM starts here).
        app_name: the application name shown by Spark.
        params: extra Spark settings, ``{"spark.executor.cores": "4", ...}`` (as in ``sparknlp.start``).
        cache_folder: the model cache (``SPARKVISION_HOME``); empty keeps the current one.
        gpu, apple_silicon, aarch64, log_folder, cluster_tmp_dir, real_time_output, output_level:
            ``sparknlp.start()``'s; accepted, and ignored with a warning (see the module docstring).
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

    master, _ = _spark_nlp_arguments(
        master,
        dict(
            gpu=gpu,
            apple_silicon=apple_silicon,
            aarch64=aarch64,
            log_folder=log_folder,
            cluster_tmp_dir=cluster_tmp_dir,
            real_time_output=real_time_output,
            output_level=output_level,
        ),
    )
    if params is not None and not isinstance(params, Mapping):
        raise TypeError('params must be a dict like {"spark.executor.memory": "8g"}')
    cores = (params or {}).get("spark.driver.cores")
    master = master or (f"local[{cores}]" if cores else DEFAULT_MASTER)
    if cache_folder:
        os.environ["SPARKVISION_HOME"] = str(Path(cache_folder).expanduser())
    settings: dict[str, str] = {
        "spark.driver.memory": memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
        "spark.sql.files.openCostInBytes": str(256 * 1024),
    }
    if not _is_local(master) and _OURS.get("PYSPARK_PYTHON") == os.environ.get("PYSPARK_PYTHON"):
        os.environ.pop("PYSPARK_PYTHON", None)  # set by an earlier local start(): not for a cluster
    if _is_local(master) and not os.environ.get("PYSPARK_PYTHON"):
        _OURS["PYSPARK_PYTHON"] = sys.executable
        # What PySpark reads when the SparkContext starts; the spark.pyspark.* settings are read by
        # spark-submit only, so they are kept for that path and for anyone inspecting the conf.
        os.environ["PYSPARK_PYTHON"] = sys.executable
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
