"""Which interpreter our stages' Python functions name for the workers (``workers_python``,
``stage_python``): the driver's for a local master left on PySpark's default ``python3``, otherwise the
context's own; and the context's setting is given back after the stage has built its function. The
end-to-end proof, with a venv's python not on ``PATH``, is test_spark_worker_python.py."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from sparkvision.spark.workers import PYSPARK_DEFAULT_PYTHON, stage_python, workers_python


@pytest.mark.parametrize(
    ("master", "python_exec", "expected"),
    [
        ("local", "python3", sys.executable),
        ("local[*]", "python3", sys.executable),
        ("local[4,2]", "python3", sys.executable),
        ("local-cluster[2,1,1024]", "python3", sys.executable),
        ("local[*]", "/opt/py/bin/python", None),  # the user chose one (PYSPARK_PYTHON): kept
        ("spark://head:7077", "python3", None),  # a cluster's nodes have their own interpreters
        ("yarn", "python3", None),
    ],
)
def test_workers_python(master: str, python_exec: str, expected: str | None) -> None:
    assert workers_python(SimpleNamespace(master=master, pythonExec=python_exec)) == expected


def test_stage_python_sets_the_interpreter_only_inside() -> None:
    context = SimpleNamespace(master="local[2]", pythonExec=PYSPARK_DEFAULT_PYTHON)
    with stage_python(SimpleNamespace(sparkContext=context)) as python:
        assert python == context.pythonExec == sys.executable
    assert context.pythonExec == PYSPARK_DEFAULT_PYTHON
    with pytest.raises(RuntimeError), stage_python(SimpleNamespace(sparkContext=context)):
        raise RuntimeError("a failing stage gives the setting back too")
    assert context.pythonExec == PYSPARK_DEFAULT_PYTHON

    chosen = SimpleNamespace(master="local[2]", pythonExec="/opt/py/bin/python")
    with stage_python(SimpleNamespace(sparkContext=chosen)) as python:
        assert python == chosen.pythonExec == "/opt/py/bin/python"
