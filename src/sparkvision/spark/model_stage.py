"""What every stage that carries a model directory does the same way: run on the workers, save, load.

The classifier stages (CLIP's included) and the captioning stage differ only in the job they build
and in the annotations their worker function returns; :class:`ModelDirStage` holds the rest once:
check the input and output columns, validate the job on the driver, make the workers run a Python
that can import us, ship the model directory, and persist it with the stage (``spark.persistence``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import Column, DataFrame

from ..errors import ConfigError
from .annotations import image_input_struct, image_stage_columns
from .persistence import ModelDirReader, ModelDirWriter
from .shipping import local_model_from, ship_model_dir
from .workers import check_workers, stage_python

__all__ = ["ModelDirStage", "check_pretrained_args", "saved_model_folder"]

log = logging.getLogger(__name__)


def check_pretrained_args(
    stage: str, name: str, lang: str, remote_loc: str | None, engine: str, *, published: str, elsewhere: str
) -> None:
    """Validate Spark NLP's ``pretrained(name, lang, remote_loc, engine)`` arguments, the same for
    every model stage: ``engine`` is accepted (always ONNX Runtime here), ``lang`` must be ``"en"``
    (or ``"xx"``), and only Spark NLP's open-source ``remote_loc`` maps to models we can resolve.

    ``published`` says what Spark NLP publishes under ``lang='en'``; ``elsewhere`` says how to load a
    model that lives at another ``remote_loc``.
    """
    if engine not in ("onnx", "openvino", "tensorflow"):
        raise ConfigError(f"engine must be 'onnx' (or Spark NLP's 'tensorflow'/'openvino'), got {engine!r}")
    if engine != "onnx":
        log.warning("%s.pretrained: engine=%r is ignored; sparkvision runs ONNX Runtime", stage, engine)
    if lang not in ("en", "xx"):
        raise ConfigError(
            f"lang={lang!r}: there are no such models; Spark NLP publishes {published} under lang='en': "
            f"call pretrained({name!r}, 'en')"
        )
    if remote_loc not in (None, "", "public/models"):
        raise ConfigError(f"remote_loc={remote_loc!r}: models there cannot be fetched; {elsewhere}")


def saved_model_folder(folder: str, spark_session: Any) -> str:
    """``loadSavedModel``'s folder as a local path: a folder on another Hadoop filesystem (``hdfs://``,
    ``s3a://``...) is copied here through ``spark_session``; ``file:`` URLs lose their scheme."""
    text = str(folder)
    if urlparse(text).scheme not in ("", "file") and spark_session is not None:
        text = str(local_model_from(spark_session, text))
    return text.removeprefix("file:")


class ModelDirStage:
    """Mixin for ``pyspark.ml`` stages with a model directory (list it before ``MLReadable``).

    Subclasses provide ``_model_dir()``, ``_job(model_ref)`` (a picklable job, validated on the
    driver) and ``_load_model_params(model_dir, spec)``, and call :meth:`_annotate_images` from
    ``_transform``.
    """

    def _model_dir(self) -> Path:
        raise NotImplementedError

    def _job(self, model_ref: str) -> Any:
        raise NotImplementedError

    def _annotate_images(
        self,
        dataset: DataFrame,
        make_udf: Callable[[Any], Callable[[Column], Column]],
        to_annotations: Callable[[Column], Column],
        annotator_type: str,
    ) -> DataFrame:
        """``dataset`` with the output column: ``to_annotations(make_udf(job)(image struct))``."""
        stage: Any = self
        input_col, output_col = image_stage_columns(
            type(self).__name__, stage.getInputCols(), stage.getOutputCol(), dataset
        )
        job = self._job("")  # validates every param on the driver, before anything is shipped
        row = image_input_struct(input_col)
        with stage_python(dataset.sparkSession):  # local master, no interpreter chosen: the driver's
            check_workers(dataset.sparkSession)  # once per SparkContext: can the workers import us?
            job = dataclasses.replace(job, model_ref=ship_model_dir(dataset.sparkSession, self._model_dir()))
            annotations = to_annotations(make_udf(job)(row))
        return dataset.withColumn(
            output_col, annotations.alias(output_col, metadata={"annotatorType": annotator_type})
        )

    # -- persistence: metadata/ (params, as Spark ML does) + model/ (a copy of the model directory) --
    def write(self) -> MLWriter:
        """A writer that stores the params *and a copy of the model directory* (self-contained)."""
        return ModelDirWriter(self)  # type: ignore[arg-type]

    @classmethod
    def read(cls) -> MLReader:
        return ModelDirReader(cls)
