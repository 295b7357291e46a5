"""``LightPipeline``: run a fitted image pipeline in this process, with no Spark job.

For a handful of images (an API call, a notebook cell), starting Spark tasks costs more than the
inference. ``LightPipeline`` walks the fitted stages itself and runs the same code as the executors,
so it returns the same annotations as ``transform`` over ``binaryFile`` input::

    light = LightPipeline(pipeline_model)
    [result] = light.fullAnnotateImage("photos/cat.jpg")
    result["class"][0].result, result["class"][0].metadata["confidence"]
    light.annotate(["a.jpg", "b.png"])      # [{"image_assembler": ["a.jpg"], "class": ["tabby, ..."]}, ...]

Inputs are paths (``str`` / ``os.PathLike``) or encoded bytes; the type decides, never the text (a
string is always a path). A path that cannot be read gives that entry an annotation with
``metadata["error"]``; it never aborts the rest of the list.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pyspark.ml import PipelineModel, Transformer

from ..errors import ConfigError
from .annotations import (
    ENCODED_FILE,
    IMAGE,
    Annotation,
    AnnotationImage,
    ImageInput,
)
from .assembler import ImageAssembler
from .classifier import ImageClassifierModel
from .inference import classify_images, worker_classifier

__all__ = ["LightPipeline"]

_Input = str | os.PathLike | bytes | bytearray | memoryview


def _stages(model: Transformer) -> list[Transformer]:
    if isinstance(model, PipelineModel):
        return [stage for inner in model.stages for stage in _stages(inner)]
    return [model]


def _read(item: Any) -> tuple[str, bytes | None, str | None]:
    """``(origin, bytes, error)`` for one input."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return "", bytes(item), None
    if not isinstance(item, (str, os.PathLike)):
        return "", None, f"unsupported input type {type(item).__name__}: pass a file path or bytes"
    origin = os.fspath(item)
    try:
        return origin, Path(origin).read_bytes(), None
    except FileNotFoundError:
        return origin, None, f"file not found: {origin}"
    except IsADirectoryError:
        return origin, None, f"{origin} is a directory, not an image file"
    except PermissionError:
        return origin, None, f"permission denied: {origin}"
    except OSError as exc:
        return origin, None, f"cannot read {origin}: {exc.strerror or exc}"


class LightPipeline:
    """Runs a fitted ``PipelineModel`` of ``ImageAssembler`` + classifier stages in-process.

    Args:
        pipelineModel: a fitted pipeline (``Pipeline(...).fit(df)``, or ``PipelineModel.load``).
        parse_embeddings: kept for Spark NLP compatibility; embeddings are filled when the classifier's
            ``includeEmbeddings`` param is on.
    """

    def __init__(self, pipelineModel: Transformer, parse_embeddings: bool = False) -> None:
        self.pipeline_model = pipelineModel
        self.parse_embeddings = parse_embeddings
        self._stages = _stages(pipelineModel)
        for stage in self._stages:
            if not isinstance(stage, (ImageAssembler, ImageClassifierModel)):
                raise ConfigError(
                    f"LightPipeline runs ImageAssembler and image classifier stages; "
                    f"{type(stage).__name__} ({stage.uid}) is not one: use transform() on a DataFrame"
                )
        if not any(isinstance(stage, ImageAssembler) for stage in self._stages):
            raise ConfigError("LightPipeline needs a pipeline that starts with an ImageAssembler")

    # -- Spark NLP's API ------------------------------------------------------------------------------
    def fullAnnotateImage(
        self, path_to_image: _Input | Sequence[_Input], text: str | Sequence[str] | None = None
    ) -> list[dict[str, list[Any]]]:
        """Annotations for each image: ``[{output column: [Annotation...]}, ...]`` in input order."""
        items = self._as_list(path_to_image)
        texts = self._texts(text, len(items))
        return self._run(items, texts)

    def annotate(
        self, target: _Input | Sequence[_Input]
    ) -> dict[str, list[str]] | list[dict[str, list[str]]]:
        """Plain results: ``{column: [result...]}`` (a list of them for a list input).

        Image columns give each image's origin; classifier columns its top label (``""`` on error).
        """
        single = self._is_single(target)
        results = []
        for annotated in self.fullAnnotateImage(target):
            results.append(
                {
                    column: [a.origin if isinstance(a, AnnotationImage) else a.result for a in annotations]
                    for column, annotations in annotated.items()
                }
            )
        return results[0] if single else results

    def transform(self, dataframe: Any) -> Any:
        """The wrapped pipeline's ``transform`` (a Spark job), for DataFrames."""
        return self.pipeline_model.transform(dataframe)

    def getStages(self) -> list[Transformer]:
        return list(self._stages)

    # -- internals ------------------------------------------------------------------------------------
    @staticmethod
    def _is_single(target: Any) -> bool:
        return isinstance(target, (str, os.PathLike, bytes, bytearray, memoryview))

    def _as_list(self, target: Any) -> list[Any]:
        if self._is_single(target):
            return [target]
        if isinstance(target, Iterable):
            return list(target)
        raise ConfigError(f"expected a path, bytes, or a list of them; got {type(target).__name__}")

    @staticmethod
    def _texts(text: str | Sequence[str] | None, count: int) -> list[str]:
        if text is None:
            return [""] * count
        if isinstance(text, str):
            return [text] * count
        texts = [str(t) for t in text]
        if len(texts) != count:
            raise ConfigError(f"{len(texts)} texts for {count} images")
        return texts

    def _run(self, items: list[Any], texts: list[str]) -> list[dict[str, list[Any]]]:
        results: list[dict[str, list[Any]]] = [{} for _ in items]
        inputs: dict[str, list[ImageInput]] = {}
        for stage in self._stages:
            if isinstance(stage, ImageAssembler):
                column = stage.getOutputCol()
                images = []
                for result, item, text in zip(results, items, texts):
                    origin, data, error = _read(item)
                    result[column] = [
                        AnnotationImage(
                            annotatorType=IMAGE,
                            origin=origin,
                            height=-1,
                            width=-1,
                            nChannels=-1,
                            mode=-1,
                            result=data or b"",
                            metadata={"encoding": ENCODED_FILE},
                            text=text,
                        )
                    ]
                    images.append(ImageInput(origin, None, None, None, None, data, True, error))
                inputs[column] = images
            else:
                column = stage._input_col()
                if column not in inputs:
                    raise ConfigError(
                        f"{type(stage).__name__} reads {column!r}, which no ImageAssembler before it creates"
                    )
                annotations = self._classify(stage, inputs[column])
                for result, annotation in zip(results, annotations):
                    result[stage.getOutputCol()] = [Annotation(**annotation)]
        return results

    @staticmethod
    def _classify(stage: ImageClassifierModel, images: list[ImageInput]) -> list[dict[str, Any]]:
        job = stage._job("")
        classifier = worker_classifier(
            stage._model_dir(), job.preprocess, threads=job.threads or None, decode_workers=None
        )
        return classify_images(
            classifier,
            images,
            top_k=job.top_k,
            batch_size=job.batch_size,
            embeddings=job.embeddings,
            candidate_labels=job.candidate_labels,
        )
