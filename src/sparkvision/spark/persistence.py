"""Saving and loading the stages that carry a model directory (classifiers, CLIP, captioning).

``stage.write().save(path)`` stores ``metadata/`` the way Spark ML does (params, uid, class) plus
``model/``, a copy of the model directory, so a saved pipeline is self-contained: it loads on another
machine, or in another application on the cluster, with no model cache. Loading reads the model first
(it sets every preprocessing param) and then the saved params over it, so a param the user changed
survives the round trip.

The driver reads a model's ``sparkvision.json`` often (params, labels, checks); :func:`model_spec`
keeps one parsed copy per file version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter

from ..errors import ModelFormatError
from ..models.spec import ModelSpec
from ..models.store import load_model_dir
from .shipping import copy_model_to, local_model_from

__all__ = ["ModelDirReader", "ModelDirWriter", "ModelStage", "file_stamp", "model_spec"]

MODEL_SUBDIR = "model"

_SPECS: dict[tuple[str, int, int], ModelSpec] = {}


class ModelStage(Protocol):
    """What a stage that carries a model directory offers its writer and reader."""

    uid: str
    _paramMap: dict[Any, Any]

    def _model_dir(self) -> Path: ...

    def _load_model_params(self, model_dir: Path, spec: ModelSpec) -> None: ...

    def _resetUid(self, uid: str) -> Any: ...


def file_stamp(path: Path) -> tuple[str, int, int]:
    """A key that changes when the file does: resolved path, modification time, size."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def model_spec(model_dir: Path) -> ModelSpec:
    """The spec of ``model_dir``, parsed once per version of its ``sparkvision.json``."""
    try:
        key = file_stamp(model_dir / "sparkvision.json")
    except OSError as exc:
        raise ModelFormatError(f"{model_dir} is not a sparkvision model directory") from exc
    spec = _SPECS.get(key)
    if spec is None:
        spec = _SPECS[key] = load_model_dir(model_dir)
    return spec


class ModelDirWriter(MLWriter):
    """Writes ``metadata/`` (params, as Spark ML does) plus ``model/`` (a copy of the model dir)."""

    def __init__(self, instance: ModelStage) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        stage = self.instance
        model_dir = stage._model_dir()
        spec = model_spec(model_dir)
        params = {p.name: v for p, v in stage._paramMap.items() if p.name != "modelPath"}
        DefaultParamsWriter.saveMetadata(
            stage,
            path,
            self.sparkSession,
            extraMetadata={"sparkvision": {"model": spec.name, "family": spec.family}},
            paramMap=params,
        )
        copy_model_to(self.sparkSession, model_dir, f"{path.rstrip('/')}/{MODEL_SUBDIR}")


class ModelDirReader(MLReader):
    """Loads what :class:`ModelDirWriter` wrote into a new instance of ``cls``."""

    def __init__(self, cls: type[Any]) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        stage = self.cls()
        stage._resetUid(metadata["uid"])
        model_dir = local_model_from(self.sparkSession, f"{path.rstrip('/')}/{MODEL_SUBDIR}")
        # The model first (it sets every preprocessing param), then the saved params over it.
        stage._load_model_params(model_dir, model_spec(model_dir))
        DefaultParamsReader.getAndSetParams(stage, metadata, skipParams=["modelPath"])
        return stage
