"""The workers' interpreter, proven from outside: a venv's python run with the venv NOT on ``PATH``
(a Jupyter kernel, cron, an IDE). PySpark's workers default to ``python3`` from ``PATH``; here that is
an interpreter without sparkvision. A plain session (as Spark NLP's tests build theirs) must still classify,
its stages running on the venv's python; an interpreter the user chose must be kept, with a clear error;
and a session from ``sparkvision.start()`` must run all its workers on the venv's python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from spark_helpers import EXAMPLES, write_tiny_model

from sparkvision import Classifier

pytestmark = [pytest.mark.spark, pytest.mark.slow]

JOB = Path(__file__).with_name("worker_python_job.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _venv_python(root: Path) -> Path:
    """A venv seeing this interpreter's packages, with this checkout's ``src`` first on its path."""
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "sparkvision_checkout.pth").write_text(f"{SRC}\n", encoding="utf-8")
    return python


def _bare_python3(folder: Path) -> Path:
    """A ``python3`` for ``PATH`` that cannot import sparkvision (this interpreter without site-packages)."""
    folder.mkdir()
    script = folder / "python3"
    script.write_text(f'#!/bin/sh\nexec "{sys.base_exec_prefix}/bin/python3" -S "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return folder


def test_workers_run_the_venv_python_when_it_is_not_on_path(tmp_path, lite0_stage):
    python = _venv_python(tmp_path / "venv")
    model = write_tiny_model(tmp_path / "tiny")
    image = EXAMPLES / "chelsea.jpg"
    bare = _bare_python3(tmp_path / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")
    }
    env.update(PATH=f"{bare}{os.pathsep}/usr/bin{os.pathsep}/bin", SPARK_LOCAL_IP="127.0.0.1")
    output = tmp_path / "report.json"
    completed = subprocess.run(
        [str(python), str(JOB), str(model), str(image), str(output), str(EXAMPLES)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())
    assert str(tmp_path / "venv") not in report["path"]

    [expected] = Classifier(model).classify([image], top_k=1)
    # Without sparkvision.start() (a plain session, as Spark NLP's tests make): the stage runs on this
    # venv's python (python3 on PATH cannot import sparkvision) and the context keeps its own setting.
    assert report["plain_result"] == [expected.label]
    assert report["plain_python_exec"] == "python3"
    # An interpreter the user chose is kept: one clear error naming it and the fix, no job traceback.
    assert "chosen_result" not in report
    error = report["chosen_error"]
    assert str(tmp_path / "bin" / "python3") in error and "sparkvision" in error and "PYSPARK_PYTHON" in error

    # With it: the workers are the venv's python, and they classify as the embedded core does.
    assert report["worker_python"] == str(python)
    assert report["result"] == [expected.label]
    # The README's documented example (EfficientNet-Lite0, already in this session's cache) runs too.
    example = report["documented_example"]
    assert (example["coffee.jpg"], example["camera.png"]) == ("espresso", "tripod")
