"""``LightPipeline``: run a fitted image pipeline in this process, with no Spark job.

For a handful of images (an API call, a notebook cell), starting Spark tasks costs more than the
inference. ``LightPipeline`` walks the fitted stages itself and runs the same code as the executors,
so it returns the same annotations as ``transform`` over ``binaryFile`` input::

    light = LightPipeline(pipeline_model)
    [result] = light.fullAnnotateImage("photos/cat.jpg")
    result["class"][0].result, result["class"][0].metadata["confidence"]
    light.fullAnnotateImage("photos/")      # a directory: one result per image file in it, by name
    light.annotate(["a.jpg", "b.png"])      # [{"image_assembler": ["a.jpg"], "class": ["tabby, ..."]}, ...]

Inputs are paths (``str`` / ``os.PathLike``; a directory stands for the image files in it, sorted by
name, as the CLI lists them) or encoded bytes; the type decides, never the text (a string is always a
path: Spark NLP guesses by looking for ``"/"``). ``fullAnnotate`` is ``fullAnnotateImage`` for these
pipelines. The image annotations carry the file's real height, width, channels and OpenCV mode (read
from its header, orientation applied), as Spark NLP's do.

A path that cannot be read — missing, unreadable, not an image — gives that entry annotations with
``metadata["error"]`` and never aborts the rest of the list. (Spark NLP raises for the whole call;
one bad file in a folder should not cost the answers for the others.)

Stages other than ``ImageAssembler`` and the classifiers are refused when annotating, unless
``setIgnoreUnsupported(True)`` says to skip them (Spark NLP's switch).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pyspark.ml import PipelineModel, Transformer

from ..errors import ConfigError, SparkvisionError
from ..images import iter_image_files
from .annotations import (
    ENCODED_FILE,
    IMAGE,
    Annotation,
    AnnotationImage,
    ImageInput,
    single_input_col,
)
from .assembler import ImageAssembler
from .captioning import VisionEncoderDecoderForImageCaptioning
from .classifier import ImageClassifierModel
from .inference import caption_images, classify_images, worker_captioner, worker_classifier

__all__ = ["LightPipeline"]

_Input = str | os.PathLike | bytes | bytearray | memoryview
#: The stages that annotate images (after an ``ImageAssembler``).
_ANNOTATING = (ImageClassifierModel, VisionEncoderDecoderForImageCaptioning)


def _stages(model: Transformer) -> list[Transformer]:
    if isinstance(model, PipelineModel):
        return [stage for inner in model.stages for stage in _stages(inner)]
    return [model]


#: OpenCV type codes Spark's image source uses: gray, BGR, BGRA.
_CV_GRAY, _CV_BGR, _CV_BGRA = 0, 16, 24
_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "F"})


def _header_info(data: bytes | None) -> tuple[int, int, int, int] | None:
    """``(height, width, nChannels, mode)`` from an encoded image's header, orientation applied.

    The channel count and OpenCV mode are those Spark's image source gives the same file: gray
    stays one channel (0), images with transparency four (BGRA, 24), the rest three (BGR, 16).
    """
    if not data:
        return None
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if image.mode in _GRAY_MODES:
                return height, width, 1, _CV_GRAY
            if "A" in image.mode or "transparency" in image.info:
                return height, width, 4, _CV_BGRA
            return height, width, 3, _CV_BGR
    except Exception:  # not an image: the classifier reports why
        return None


def _expand(items: list[Any]) -> list[Any]:
    """Directories become the image files in them (sorted); everything else stays as given."""
    expanded: list[Any] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            try:
                expanded.extend(str(path) for path in iter_image_files([item]))
            except SparkvisionError:
                expanded.append(item)  # an empty folder: one entry that says so
        else:
            expanded.append(item)
    return expanded


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
        return origin, None, f"{origin} is a directory with no image files in it"
    except PermissionError:
        return origin, None, f"permission denied: {origin}"
    except OSError as exc:
        return origin, None, f"cannot read {origin}: {exc.strerror or exc}"


class LightPipeline:
    """Runs a fitted ``PipelineModel`` of ``ImageAssembler`` + classifier / captioning stages in-process.

    Args:
        pipelineModel: a fitted pipeline (``Pipeline(...).fit(df)``, or ``PipelineModel.load``).
        parse_embeddings: kept for Spark NLP compatibility; embeddings are filled when the classifier's
            ``includeEmbeddings`` param is on.
    """

    def __init__(self, pipelineModel: Transformer, parse_embeddings: bool = False) -> None:
        self.pipeline_model = pipelineModel
        self.parse_embeddings = parse_embeddings
        self._all_stages = _stages(pipelineModel)
        self._ignore_unsupported = False

    @property
    def _stages(self) -> list[Transformer]:
        """The stages to run: refuses (or, with ``ignoreUnsupported``, skips) any other kind."""
        stages = []
        for stage in self._all_stages:
            if isinstance(stage, (ImageAssembler, *_ANNOTATING)):
                stages.append(stage)
            elif not self._ignore_unsupported:
                raise ConfigError(
                    f"LightPipeline runs ImageAssembler, image classifier and captioning stages; {type(stage).__name__} "
                    f"({stage.uid}) is not one: use transform() on a DataFrame, or setIgnoreUnsupported(True) "
                    "to skip it"
                )
        if not any(isinstance(stage, ImageAssembler) for stage in stages):
            raise ConfigError("LightPipeline needs a pipeline that starts with an ImageAssembler")
        return stages

    def setIgnoreUnsupported(self, value: bool) -> LightPipeline:
        """Skip stages LightPipeline cannot run in-process (instead of refusing the pipeline)."""
        self._ignore_unsupported = bool(value)
        return self

    def getIgnoreUnsupported(self) -> bool:
        return self._ignore_unsupported

    # -- Spark NLP's API ------------------------------------------------------------------------------
    def fullAnnotateImage(
        self, path_to_image: _Input | Sequence[_Input], text: str | Sequence[str] | None = None
    ) -> list[dict[str, list[Any]]]:
        """Annotations for each image: ``[{output column: [Annotation...]}, ...]`` in input order.

        ``path_to_image``: a path, a directory (its image files, sorted), encoded bytes, or a list of
        these. ``text``: one text for every image, or one per image (the image annotations' ``text``).
        """
        items = _expand(self._as_list(path_to_image))
        texts = self._texts(text, len(items))
        return self._run(items, texts)

    def fullAnnotate(
        self, target: _Input | Sequence[_Input], optional_target: str = ""
    ) -> list[dict[str, list[Any]]]:
        """Spark NLP's general entry point: for image pipelines, :meth:`fullAnnotateImage` of ``target``
        (``optional_target``, when given, is the images' text)."""
        return self.fullAnnotateImage(target, optional_target or None)

    def annotate(
        self, target: _Input | Sequence[_Input], optional_target: str = ""
    ) -> dict[str, list[str]] | list[dict[str, list[str]]]:
        """Plain results: ``{column: [result...]}`` (a list of them for a list or a directory).

        Image columns give each image's origin; classifier columns its top label, captioning columns
        the best caption (``""`` on error).
        """
        single = self._is_single(target) and not (
            isinstance(target, (str, os.PathLike)) and Path(target).is_dir()
        )
        results = []
        for annotated in self.fullAnnotate(target, optional_target):
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
                    height, width, channels, mode = _header_info(data) or (-1, -1, -1, -1)
                    metadata = {"encoding": ENCODED_FILE, **({"error": error} if error else {})}
                    result[column] = [
                        AnnotationImage(
                            annotatorType=IMAGE,
                            origin=origin,
                            height=height,
                            width=width,
                            nChannels=channels,
                            mode=mode,
                            result=data or b"",
                            metadata=metadata,
                            text=text,
                        )
                    ]
                    images.append(ImageInput(origin, None, None, None, None, data, True, error))
                inputs[column] = images
            else:
                column = single_input_col(type(stage).__name__, stage.getInputCols())
                if column not in inputs:
                    raise ConfigError(
                        f"{type(stage).__name__} reads {column!r}, which no ImageAssembler before it creates"
                    )
                if isinstance(stage, VisionEncoderDecoderForImageCaptioning):
                    annotations = self._caption(stage, inputs[column])
                else:
                    annotations = self._classify(stage, inputs[column])
                for result, annotation in zip(results, annotations):
                    result[stage.getOutputCol()] = [Annotation(**annotation)]
        return results

    @staticmethod
    def _classify(stage: ImageClassifierModel, images: list[ImageInput]) -> list[dict[str, Any]]:
        job = stage._job("")
        classifier = worker_classifier(
            stage._model_dir(),
            job.preprocess,
            threads=job.threads or None,
            decode_workers=None,
            prompt_template=job.prompt_template,
        )
        return classify_images(
            classifier,
            images,
            top_k=job.top_k,
            batch_size=job.batch_size,
            embeddings=job.embeddings,
            candidate_labels=job.candidate_labels,
        )

    @staticmethod
    def _caption(
        stage: VisionEncoderDecoderForImageCaptioning, images: list[ImageInput]
    ) -> list[dict[str, Any]]:
        job = stage._job("")
        captioner = worker_captioner(
            stage._model_dir(), job.preprocess, threads=job.threads or None, decode_workers=None
        )
        return caption_images(captioner, images, job)
