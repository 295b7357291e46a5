"""``VisionEncoderDecoderForImageCaptioning``: Spark NLP's captioning stage, on the embedded captioner.

A ``pyspark.ml`` ``Model`` holding only Params (the model directory and Spark NLP's params), like the
classifier stages: it reads an image annotation column (``ImageAssembler``) and writes a ``document``
annotation per image whose ``result`` is the best caption::

    captioner = VisionEncoderDecoderForImageCaptioning.loadSavedModel("vit-gpt2-checkpoint", spark) \\
        .setInputCols(["image_assembler"]).setOutputCol("caption").setBeamSize(2).setDoSample(False)
    Pipeline(stages=[imageAssembler, captioner]).fit(df).transform(df).select("caption.result")

Every image goes through :class:`sparkvision.tasks.captioning.Captioner` (the CLI's and the service's
captioner) on the executors: one captioner per Python worker process, the model directory shipped
with the job (see :mod:`.inference`). ``LightPipeline`` runs the same code in-process.

Params, with Spark NLP's names and defaults (its ``HasGeneratorProperties`` and image properties):
``batchSize`` 2, ``beamSize`` 1, ``doSample`` **true** (so captions vary from run to run unless
``seed`` is set; Spark NLP's own example sets ``setDoSample(False)``), ``maxOutputLength`` 50 (the
longest sequence, start token included: transformers' ``max_length``), ``minOutputLength`` 0,
``nReturnSequences`` 1, ``noRepeatNgramSize`` 0, ``repetitionPenalty`` 1.0, ``temperature`` 1.0,
``topK`` 50, ``topP`` 1.0, and the preprocessing params ``doResize``, ``doNormalize``, ``size`` (224),
``imageMean``/``imageStd`` (0.5), ``resample`` (2), ``doRescale``, ``rescaleFactor`` (1/255) — set
from the model's own processor by ``pretrained()``/``loadSavedModel()``. The generation params keep
Spark NLP's defaults whatever the model's ``generation_config.json`` says, as in Spark NLP.
``task`` (text-to-text prefixes), ``configProtoBytes`` (TensorFlow) and ``lazyAnnotator`` are kept
for Spark NLP scripts and have no effect; ``engine`` is always ``"onnx"``. Ours: ``seed`` (sampling:
each image's stream is seeded from it and the image's position within its partition),
``onnxThreads`` (ONNX Runtime threads per task, 0 = ``spark.task.cpus``), ``modelPath``.

Output metadata: ``image`` ("0"), the image's ``origin``/``height``/``width``/``nChannels``/``mode``,
``caption_1`` ... ``caption_N`` (all returned sequences, best first) and ``n_captions``, or ``error``
for an image that could not be read (then ``result`` is empty and ``end`` is -1).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pyspark import keyword_only
from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from ..errors import ConfigError, ModelNotFoundError
from ..models.catalogue import resolve_model
from ..models.spec import ModelSpec
from ..tasks.captioning import DEFAULT_CAPTIONING_MODEL, Captioner
from .annotations import (
    DOCUMENT,
    IMAGE,
    document_annotations_column,
)
from .classifier import import_saved_model
from .inference import CaptionJob, make_caption_udf
from .model_stage import ModelDirStage, check_pretrained_args, saved_model_folder
from .params import (
    PREPROCESS_FIELDS,
    AnnotatorProperties,
    HasBatchedAnnotateImage,
    HasConfigProtoBytes,
    HasEngine,
    HasImageFeatureProperties,
    HasOnnxThreads,
    HasRescaleFactor,
    ParamValueAccess,
    at_least,
)
from .persistence import model_spec

__all__ = ["HasGeneratorProperties", "VisionEncoderDecoderForImageCaptioning"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Params)

#: The preprocessing params this stage has (Spark NLP's captioning stage has no crop params).
_STAGE_PREPROCESS = (
    "size",
    "doResize",
    "resample",
    "doRescale",
    "rescaleFactor",
    "doNormalize",
    "imageMean",
    "imageStd",
)


def _positive_float(value: Any, name: str, *, upper: float | None = None) -> float:
    number = TypeConverters.toFloat(value)
    if not number > 0 or (upper is not None and number > upper):
        bound = f"in (0, {upper}]" if upper is not None else "above 0"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
    return number


class HasGeneratorProperties(Params):
    """Spark NLP's text-generation params, with its names; each maps to a ``generate()`` option."""

    task: Param[str] = Param(
        Params._dummy(),
        "task",
        "Transformer's task, e.g. summarize> (text models; no effect here)",
        TypeConverters.toString,
    )
    minOutputLength: Param[int] = Param(
        Params._dummy(),
        "minOutputLength",
        "Minimum length of the sequence to be generated",
        TypeConverters.toInt,
    )
    maxOutputLength: Param[int] = Param(
        Params._dummy(), "maxOutputLength", "Maximum length of output text", TypeConverters.toInt
    )
    doSample: Param[bool] = Param(
        Params._dummy(),
        "doSample",
        "Whether or not to use sampling; use greedy decoding otherwise",
        TypeConverters.toBoolean,
    )
    temperature: Param[float] = Param(
        Params._dummy(),
        "temperature",
        "The value used to module the next token probabilities",
        TypeConverters.toFloat,
    )
    topK: Param[int] = Param(
        Params._dummy(),
        "topK",
        "The number of highest probability vocabulary tokens to keep for top-k-filtering",
        TypeConverters.toInt,
    )
    topP: Param[float] = Param(
        Params._dummy(),
        "topP",
        "If set to float < 1, only the most probable tokens with probabilities that add up to topP or higher "
        "are kept for generation",
        TypeConverters.toFloat,
    )
    repetitionPenalty: Param[float] = Param(
        Params._dummy(),
        "repetitionPenalty",
        "The parameter for repetition penalty. 1.0 means no penalty",
        TypeConverters.toFloat,
    )
    noRepeatNgramSize: Param[int] = Param(
        Params._dummy(),
        "noRepeatNgramSize",
        "If set to int > 0, all ngrams of that size can only occur once",
        TypeConverters.toInt,
    )
    beamSize: Param[int] = Param(
        Params._dummy(), "beamSize", "The Number of beams for beam search.", TypeConverters.toInt
    )
    nReturnSequences: Param[int] = Param(
        Params._dummy(),
        "nReturnSequences",
        "The number of sequences to return from the beam search.",
        TypeConverters.toInt,
    )

    def setTask(self: S, value: str) -> S:
        """Kept for Spark NLP's text-to-text models (a prompt prefix); captioning has no prompt."""
        return self._set(task=value)

    def getTask(self) -> str | None:
        return self.getOrDefault(self.task) if self.isDefined(self.task) else None  # type: ignore[attr-defined]

    def setMinOutputLength(self: S, value: int) -> S:
        """Sets the minimum length of the generated sequence (start token included); 0 for none."""
        return self._set(minOutputLength=at_least(0, value, "minOutputLength"))

    def getMinOutputLength(self) -> int:
        return self.getOrDefault(self.minOutputLength)  # type: ignore[attr-defined]

    def setMaxOutputLength(self: S, value: int) -> S:
        """Sets the maximum length of the generated sequence (start token included, as ``max_length``)."""
        return self._set(maxOutputLength=at_least(2, value, "maxOutputLength"))

    def getMaxOutputLength(self) -> int:
        return self.getOrDefault(self.maxOutputLength)  # type: ignore[attr-defined]

    def setDoSample(self: S, value: bool) -> S:
        """Sets whether to sample (with ``topK``, ``topP``, ``temperature``); greedy or beam search otherwise."""
        return self._set(doSample=value)

    def getDoSample(self) -> bool:
        return self.getOrDefault(self.doSample)  # type: ignore[attr-defined]

    def setTemperature(self: S, value: float) -> S:
        """Sets the temperature the next-token probabilities are divided by when sampling (above 0)."""
        return self._set(temperature=_positive_float(value, "temperature"))

    def getTemperature(self) -> float:
        return self.getOrDefault(self.temperature)  # type: ignore[attr-defined]

    def setTopK(self: S, value: int) -> S:
        """Sets how many of the most probable tokens sampling keeps (0: no top-k filtering)."""
        return self._set(topK=at_least(0, value, "topK"))

    def getTopK(self) -> int:
        return self.getOrDefault(self.topK)  # type: ignore[attr-defined]

    def setTopP(self: S, value: float) -> S:
        """Sets the cumulative probability of the tokens sampling keeps, in (0, 1] (1: no filtering)."""
        return self._set(topP=_positive_float(value, "topP", upper=1.0))

    def getTopP(self) -> float:
        return self.getOrDefault(self.topP)  # type: ignore[attr-defined]

    def setRepetitionPenalty(self: S, value: float) -> S:
        """Sets the repetition penalty (above 0; 1.0 means none)."""
        return self._set(repetitionPenalty=_positive_float(value, "repetitionPenalty"))

    def getRepetitionPenalty(self) -> float:
        return self.getOrDefault(self.repetitionPenalty)  # type: ignore[attr-defined]

    def setNoRepeatNgramSize(self: S, value: int) -> S:
        """Sets the size of n-grams that may occur only once (0: no restriction)."""
        return self._set(noRepeatNgramSize=at_least(0, value, "noRepeatNgramSize"))

    def getNoRepeatNgramSize(self) -> int:
        return self.getOrDefault(self.noRepeatNgramSize)  # type: ignore[attr-defined]

    def setBeamSize(self: S, value: int) -> S:
        """Sets the number of beams for beam search (1: greedy, or sampling with ``doSample``)."""
        return self._set(beamSize=at_least(1, value, "beamSize"))

    def getBeamSize(self) -> int:
        return self.getOrDefault(self.beamSize)  # type: ignore[attr-defined]

    def setNReturnSequences(self: S, value: int) -> S:
        """Sets how many captions each image gets (at most ``beamSize`` with beam search)."""
        return self._set(nReturnSequences=at_least(1, value, "nReturnSequences"))

    def getNReturnSequences(self) -> int:
        return self.getOrDefault(self.nReturnSequences)  # type: ignore[attr-defined]


class VisionEncoderDecoderForImageCaptioning(
    Model,
    AnnotatorProperties,
    HasBatchedAnnotateImage,
    HasImageFeatureProperties,
    HasGeneratorProperties,
    HasRescaleFactor,
    HasEngine,
    HasConfigProtoBytes,
    HasOnnxThreads,
    ParamValueAccess,
    ModelDirStage,
    MLReadable,
    MLWritable,
):
    """Captions the images of an image annotation column (see the module docstring)."""

    #: Spark NLP's class attributes: the stage's name and its annotation types.
    name: ClassVar[str] = "VisionEncoderDecoderForImageCaptioning"
    inputAnnotatorTypes: ClassVar[list[str]] = [IMAGE]
    outputAnnotatorType: ClassVar[str] = DOCUMENT

    seed: Param[int] = Param(
        Params._dummy(),
        "seed",
        "seed for sampling (doSample): each image's stream comes from it and the image's position in its partition",
        TypeConverters.toInt,
    )
    modelPath: Param[str] = Param(
        Params._dummy(), "modelPath", "local sparkvision captioning model directory", TypeConverters.toString
    )

    @keyword_only
    def __init__(self, *, inputCols: list[str] | None = None, outputCol: str | None = None) -> None:
        super().__init__()
        self._setDefault(
            inputCols=["image_assembler"],
            outputCol="caption",
            batchSize=2,
            beamSize=1,
            doNormalize=True,
            doRescale=True,
            doResize=True,
            doSample=True,
            imageMean=[0.5, 0.5, 0.5],
            imageStd=[0.5, 0.5, 0.5],
            maxOutputLength=50,
            minOutputLength=0,
            nReturnSequences=1,
            noRepeatNgramSize=0,
            repetitionPenalty=1.0,
            resample=2,
            rescaleFactor=1 / 255.0,
            size=224,
            temperature=1.0,
            topK=50,
            topP=1.0,
            onnxThreads=0,
        )
        self.setParams(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setParams(self, **kwargs: Any) -> VisionEncoderDecoderForImageCaptioning:
        """Set several params at once (validated like the individual setters)."""
        for key, value in kwargs.items():
            setter = getattr(self, "set" + key[0].upper() + key[1:], None)
            if setter is None or not self.hasParam(key):
                raise ConfigError(f"{type(self).__name__} has no param {key!r}")
            setter(value)
        return self

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def pretrained(
        cls,
        name: str = DEFAULT_CAPTIONING_MODEL,
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> VisionEncoderDecoderForImageCaptioning:
        """A stage for a catalogue or cached captioning model; Spark NLP's signature and default name.

        ``image_captioning_vit_gpt2`` (Spark NLP's Models Hub name) is Hugging Face's
        ``nlpconnect/vit-gpt2-image-captioning``, converted into the model cache on first use (once,
        with network) and found there afterwards. ``lang`` is ``"en"`` (or ``"xx"``); ``remote_loc``
        may name Spark NLP's ``"public/models"``; ``engine`` is accepted (always ONNX Runtime here).
        """
        check_pretrained_args(
            cls.__name__,
            name,
            lang,
            remote_loc,
            engine,
            published="its captioning models",
            elsewhere="load a local Hugging Face VisionEncoderDecoder checkpoint with loadSavedModel(folder, spark)",
        )
        try:
            model_dir, spec = resolve_model(name)
        except ModelNotFoundError as exc:
            message = str(exc).rstrip().rstrip(".")
            raise ModelNotFoundError(
                f"{message}. Or load a local copy of the checkpoint with "
                f"{cls.__name__}.loadSavedModel(folder, spark)."
            ) from exc
        return cls._from_model(model_dir, spec)

    @classmethod
    def loadSavedModel(cls, folder: str, spark_session: Any = None) -> VisionEncoderDecoderForImageCaptioning:
        """A stage for a model folder, local or on any Hadoop filesystem Spark can read (then
        ``spark_session`` copies it): a Hugging Face ``VisionEncoderDecoderModel`` checkpoint (imported
        once into the model cache, as ``sparkvision import`` does) or a sparkvision captioning model."""
        model_dir, spec = import_saved_model(saved_model_folder(folder, spark_session))
        return cls._from_model(model_dir, spec)

    @classmethod
    def _from_model(cls, model_dir: Path, spec: ModelSpec) -> VisionEncoderDecoderForImageCaptioning:
        if spec.task != "captioning":
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model; {cls.__name__} needs a captioning model "
                "(a Hugging Face VisionEncoderDecoderModel checkpoint)"
            )
        stage = cls()
        stage._load_model_params(model_dir, spec)
        return stage

    def _load_model_params(self, model_dir: Path, spec: ModelSpec) -> None:
        """Point at a model and set the preprocessing params from its spec (its image processor)."""
        values = {}
        for param in _STAGE_PREPROCESS:
            field, _, to_param = PREPROCESS_FIELDS[param]
            values[param] = to_param(getattr(spec.preprocess, field))
        self._set(modelPath=str(model_dir), **values)

    # -- the model ----------------------------------------------------------------------------------
    def _model_dir(self) -> Path:
        if not self.isDefined(self.modelPath):
            raise ConfigError(
                f"{type(self).__name__} has no model: create it with .pretrained(name) or "
                ".loadSavedModel(folder, spark)"
            )
        return Path(self.getModelPath())

    def getModelSpec(self) -> ModelSpec:
        """The model's spec with the current preprocessing params applied (what ``transform`` uses)."""
        spec = model_spec(self._model_dir())
        fields = {}
        for param in _STAGE_PREPROCESS:
            field, to_spec, _ = PREPROCESS_FIELDS[param]
            fields[field] = to_spec(self.getOrDefault(param))
        try:
            preprocess = dataclasses.replace(spec.preprocess, **fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{type(self).__name__}: invalid preprocessing params: {exc}") from exc
        return spec.with_changes(preprocess=preprocess)

    def generationOptions(self) -> dict[str, Any]:
        """The params as :meth:`Captioner.caption <sparkvision.tasks.captioning.Captioner.caption>`'s
        generation options (what ``transform`` passes for every image)."""
        return {
            "max_length": self.getMaxOutputLength(),
            "min_length": self.getMinOutputLength(),
            "do_sample": self.getDoSample(),
            "top_k": self.getTopK(),
            "top_p": self.getTopP(),
            "temperature": self.getTemperature(),
            "num_beams": self.getBeamSize(),
            "repetition_penalty": self.getRepetitionPenalty(),
            "no_repeat_ngram_size": self.getNoRepeatNgramSize(),
            "num_return_sequences": self.getNReturnSequences(),
            "seed": self.getSeed(),
        }

    def _job(self, model_ref: str) -> CaptionJob:
        """The executors' job; every param is checked here, on the driver, before anything runs."""
        spec = self.getModelSpec()
        generation = self.generationOptions()
        Captioner(self._model_dir(), spec).generation_config(**generation)  # refuses bad combinations
        return CaptionJob(
            model_ref=model_ref,
            preprocess=spec.preprocess.to_dict(),
            generation=tuple(sorted(generation.items())),
            batch_size=self.getBatchSize(),
            threads=self.getOnnxThreads(),
        )

    # -- transform (persistence: the classifier stages' format, from ModelDirStage) ----------------
    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self._annotate_images(dataset, make_caption_udf, document_annotations_column, DOCUMENT)

    # -- our params ---------------------------------------------------------------------------------
    def setSeed(self, value: int | None) -> VisionEncoderDecoderForImageCaptioning:
        """Seed sampling so that ``doSample`` captions repeat (per image position within a partition)."""
        if value is None:
            self.clear(self.seed)
            return self
        return self._set(seed=at_least(0, value, "seed"))

    def getSeed(self) -> int | None:
        return self.getOrDefault(self.seed) if self.isDefined(self.seed) else None

    def setModelPath(self, value: str) -> VisionEncoderDecoderForImageCaptioning:
        """Point at another local captioning model directory (its preprocessing params are loaded too)."""
        path = Path(value)
        self._load_model_params(path, model_spec(path))
        return self

    def getModelPath(self) -> str:
        return self.getOrDefault(self.modelPath)
