"""Where model directories live, and how they are written without ever leaving half a model behind.

The cache is ``$SPARKVISION_HOME/models/<name>/`` (default ``~/.cache/sparkvision``). Every model is
built in a temporary sibling directory and renamed into place only once complete, so an interrupted
conversion or import leaves nothing that looks like a model.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError, ModelFormatError
from .spec import MODEL_FILE, SPEC_FILE, ModelSpec

__all__ = [
    "build_model_dir",
    "cache_home",
    "cached_model_dir",
    "is_model_dir",
    "load_model_dir",
    "models_root",
    "validate_model_name",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def cache_home() -> Path:
    """The sparkvision cache: ``$SPARKVISION_HOME``, else ``~/.cache/sparkvision``."""
    configured = os.environ.get("SPARKVISION_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sparkvision"


def models_root() -> Path:
    return cache_home() / "models"


def validate_model_name(name: str) -> str:
    """Model names become directory names: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not _NAME.match(name) or name in {".", ".."}:
        raise ConfigError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 128 characters)"
        )
    return name


def cached_model_dir(name: str) -> Path:
    return models_root() / validate_model_name(name)


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / SPEC_FILE).is_file() and (path / MODEL_FILE).is_file()


def load_model_dir(path: str | Path) -> ModelSpec:
    """Read and check a model directory; :class:`ModelFormatError` says what is wrong with it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFormatError(f"{path} is not a directory")
    spec = ModelSpec.load(path)
    model_file = path / MODEL_FILE
    if not model_file.is_file() or model_file.stat().st_size == 0:
        raise ModelFormatError(f"{model_file} is missing or empty")
    return spec


def build_model_dir(target: Path, build: Callable[[Path], ModelSpec], *, replace: bool = False) -> ModelSpec:
    """Run ``build(tmpdir)`` and move the finished directory to ``target``.

    ``build`` writes ``model.onnx`` (and anything else) into the directory it is given and returns
    the spec, which is saved beside it. If ``target`` exists it is kept (another process won the race)
    unless ``replace`` is true. Nothing is left behind when ``build`` fails.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        spec = build(tmp)
        spec.save(tmp)
        load_model_dir(tmp)
        if replace and target.exists():
            trash = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_model_dir(target):
                raise
            # Built concurrently by someone else: theirs is as good as ours.
            return load_model_dir(target)
        return spec
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
