"""Can Spark's Python workers run sparkvision? Asked once per SparkContext, before the first job.

When the workers' interpreter lacks sparkvision (a venv's python started without activating the venv,
so PySpark's default ``python3`` is another interpreter; a cluster whose nodes never got the
package), every task dies while unpickling the classifier function, with a ``ModuleNotFoundError``
buried in a Java stack trace. Instead, the first transform runs one tiny task that asks a worker
whether it can find the packages the executors need (``importlib.util.find_spec``: nothing is
imported, and the task's functions are the standard library's, so the probe itself needs nothing of
ours on the worker) and turns a negative answer into a :class:`~sparkvision.errors.ConfigError`
that names the interpreter and says how to fix it.

Set ``spark.sparkvision.checkWorkers=false`` to skip the probe (for instance when executors come and
go with differing environments and a single task proves little).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

from ..errors import ConfigError

__all__ = ["WORKER_MODULES", "check_workers"]

#: What the executors import to classify (top-level names).
WORKER_MODULES = ("sparkvision", "numpy", "PIL", "onnxruntime", "pandas", "pyarrow")
_CHECKED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()


def _fix() -> str:
    return (
        f"For a local master, start the session with sparkvision.start() or set PYSPARK_PYTHON={sys.executable} "
        "before the SparkContext starts. On a cluster, install 'sparkvision[spark]' on every node, or ship a "
        "packed environment (spark-submit --archives env.tar.gz#environment with "
        "spark.pyspark.python=./environment/bin/python; see the README's cluster guide)"
    )


def check_workers(spark: Any) -> None:
    """Raise :class:`ConfigError` if a Python worker of ``spark`` cannot find sparkvision's packages."""
    context = spark.sparkContext
    if str(context.getConf().get("spark.sparkvision.checkWorkers", "true")).lower() == "false":
        return
    python = str(getattr(context, "pythonExec", None) or "python3")
    key = (context.applicationId, python)
    with _LOCK:
        if key in _CHECKED:
            return
        try:
            found = (
                context.parallelize(list(WORKER_MODULES), 1).map(importlib.util.find_spec).map(bool).collect()
            )
        except Exception as exc:  # the worker could not even start, or lacks pyspark itself
            first = next((line for line in str(exc).splitlines() if "Error" in line), str(exc)[:300])
            raise ConfigError(
                f"Spark's Python workers (interpreter {python!r}) cannot run a task: {first.strip()}. "
                f"{_fix()}"
            ) from exc
        missing = [name for name, ok in zip(WORKER_MODULES, found) if not ok]
        if missing:
            raise ConfigError(
                f"Spark's Python workers (interpreter {python!r}) cannot import {', '.join(missing)}, which "
                f"sparkvision's stages need on the executors. {_fix()}"
            )
        _CHECKED.add(key)
