"""Which Python runs sparkvision's functions on the workers, and can it? Asked before the first job.

**The interpreter.** PySpark's workers run the interpreter named by ``PYSPARK_PYTHON`` when the
SparkContext started, default ``python3`` from ``PATH``. A venv's python started without activating
the venv (a Jupyter kernel, cron, an IDE) then drives workers that run some other ``python3``. Spark
NLP's annotators run in the JVM and never notice; ours run in Python. So for a *local* master (the
workers run on this machine) on which nobody chose an interpreter (PySpark's default ``python3``),
:func:`stage_python` makes the functions our stages create run on the driver's own interpreter
(``sys.executable``). It sets the ``pythonExec`` that PySpark bakes into each Python function
(``SimplePythonFunction``) only while our stage builds its function, so the user's own UDFs and the
SparkContext keep their setting. A session from ``sparkvision.start()`` already uses the driver's
interpreter; an interpreter the user chose (``PYSPARK_PYTHON``) and every non-local master are left
alone.

**The check.** When the workers' interpreter lacks sparkvision (a venv's python started without activating the venv,
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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError

__all__ = ["PYSPARK_DEFAULT_PYTHON", "WORKER_MODULES", "check_workers", "stage_python", "workers_python"]

#: What the executors import to classify (top-level names).
WORKER_MODULES = ("sparkvision", "numpy", "PIL", "onnxruntime", "pandas", "pyarrow")
#: What PySpark's workers run when ``PYSPARK_PYTHON`` was not set as the SparkContext started.
PYSPARK_DEFAULT_PYTHON = "python3"
_CHECKED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()
_EXEC_LOCK = threading.RLock()


def _local_master(master: str) -> bool:
    return master == "local" or master.startswith(("local[", "local-cluster["))


def workers_python(context: Any) -> str | None:
    """The interpreter our stages' functions should name for ``context``'s workers, or ``None`` to keep
    the context's own: the driver's interpreter for a local master whose workers would otherwise run
    PySpark's default ``python3`` from ``PATH``."""
    current = getattr(context, "pythonExec", None)
    if current != PYSPARK_DEFAULT_PYTHON or not _local_master(str(context.master)):
        return None
    return sys.executable


@contextmanager
def stage_python(spark: Any) -> Iterator[str]:
    """While inside, Python functions created for ``spark`` run on :func:`workers_python`'s choice.

    Yields the interpreter the workers will run. Our stages create their function and run the
    worker check inside this block; PySpark copies ``pythonExec`` into each function when it is
    created, so the setting is restored on leaving without affecting the job.
    """
    context = spark.sparkContext
    chosen = workers_python(context)
    if chosen is None:
        yield str(getattr(context, "pythonExec", None) or PYSPARK_DEFAULT_PYTHON)
        return
    with _EXEC_LOCK:
        previous = context.pythonExec
        context.pythonExec = chosen
        try:
            yield chosen
        finally:
            context.pythonExec = previous


def _fix() -> str:
    return (
        f"For a local master, start the session with sparkvision.start(), or leave PYSPARK_PYTHON unset, or set "
        f"it to {sys.executable} before the SparkContext starts. On a cluster, install 'sparkvision[spark]' on every node, or ship a "
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
