"""The stages' params, declared once: mixins in the manner of Spark NLP's and pyspark's shared params.

Spark NLP builds its image classifiers from ``AnnotatorProperties`` (``inputCols``, ``outputCol``,
``lazyAnnotator``), ``HasBatchedAnnotateImage`` (``batchSize``), ``HasImageFeatureProperties``
(``doResize``, ``doNormalize``, ``featureExtractorType``, ``imageMean``, ``imageStd``, ``resample``,
``size``), ``HasRescaleFactor`` (``doRescale``, ``rescaleFactor``), ``HasEngine`` (``engine``) and, for
CLIP, ``HasCandidateLabelsProperties``. The mixins here carry the same names, docs and setters, plus
the getters Spark NLP generates at run time (often missing there), so a stage is assembled the same
way and a Spark NLP script finds every method it calls.

Validation is not repeated here: a preprocessing setter hands its value to
:class:`~sparkvision.preprocess.PreprocessSpec` (the core's spec, the one place that knows what a valid
size, crop, filter or mean is) and stores what the spec accepted. :data:`PREPROCESS_FIELDS` maps each
param to its spec field, both ways, for the stages that turn params into a spec and back.

Params that mean nothing for ONNX Runtime models are accepted and kept, documented as such:
``configProtoBytes`` (TensorFlow session options), ``featureExtractorType`` (the preprocessing comes
from the model's own spec), ``lazyAnnotator`` (Spark NLP's RecursivePipeline), ``engine`` (always
``"onnx"``), ``contradictionIdParam``/``entailmentIdParam`` (NLI-based zero-shot text models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pyspark.ml.param import Param, Params, TypeConverters

from ..errors import ConfigError
from ..preprocess import PIL_CODE_TO_INTERPOLATION, PreprocessSpec

__all__ = [
    "CATEGORY",
    "IMAGE",
    "PREPROCESS_FIELDS",
    "AnnotatorProperties",
    "HasBatchedAnnotateImage",
    "HasCandidateLabelsProperties",
    "HasConfigProtoBytes",
    "HasCropPct",
    "HasEngine",
    "HasImageFeatureProperties",
    "HasOnnxThreads",
    "HasRescaleFactor",
    "HasTopK",
    "ParamValueAccess",
    "at_least",
    "spec_field_value",
]

#: Spark NLP's ``AnnotatorType.IMAGE`` / ``AnnotatorType.CATEGORY``.
IMAGE = "image"
CATEGORY = "category"

S = TypeVar("S", bound=Params)

_INTERPOLATION_TO_PIL_CODE = {name: code for code, name in PIL_CODE_TO_INTERPOLATION.items()}


def _resample_to_spec(code: Any) -> str:
    number = TypeConverters.toInt(code)
    if number not in PIL_CODE_TO_INTERPOLATION:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(PIL_CODE_TO_INTERPOLATION.items()))
        raise ConfigError(f"resample must be a Pillow filter code ({codes}), got {code!r}")
    return PIL_CODE_TO_INTERPOLATION[number]


#: param → (PreprocessSpec field, param value → field value, field value → param value).
PREPROCESS_FIELDS: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "size": ("size", TypeConverters.toInt, int),
    "doResize": ("do_resize", TypeConverters.toBoolean, bool),
    "resample": ("interpolation", _resample_to_spec, lambda name: _INTERPOLATION_TO_PIL_CODE[name]),
    "doRescale": ("do_rescale", TypeConverters.toBoolean, bool),
    "rescaleFactor": ("rescale_factor", TypeConverters.toFloat, float),
    "doNormalize": ("do_normalize", TypeConverters.toBoolean, bool),
    "imageMean": ("mean", lambda v: tuple(TypeConverters.toListFloat(v)), list),
    "imageStd": ("std", lambda v: tuple(TypeConverters.toListFloat(v)), list),
    "cropPct": ("crop_pct", TypeConverters.toFloat, float),
    "resizeMode": ("resize", TypeConverters.toString, str),
}


def spec_field_value(param: str, value: Any) -> Any:
    """A preprocessing param's value as its :class:`PreprocessSpec` field, validated by the spec."""
    field, to_spec, _ = PREPROCESS_FIELDS[param]
    try:
        converted = to_spec(value)
    except TypeError as exc:
        raise ConfigError(f"{param}: {exc}") from exc
    spec = PreprocessSpec(**{field: converted})  # raises ConfigError with the spec's own message
    return getattr(spec, field)


def at_least(minimum: int, value: Any, name: str) -> int:
    """``value`` as an int no smaller than ``minimum`` (counts and sizes that are not preprocessing)."""
    number = TypeConverters.toInt(value)
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
    return number


class _PreprocessParams(Params):
    """Shared setter/getter for params validated by the preprocessing spec."""

    def _set_preprocess(self: S, param: str, value: Any) -> S:
        _, _, to_param = PREPROCESS_FIELDS[param]
        return self._set(**{param: to_param(spec_field_value(param, value))})


# -- Spark NLP's AnnotatorProperties ----------------------------------------------------------------
class AnnotatorProperties(Params):
    """``inputCols`` / ``outputCol`` / ``lazyAnnotator`` and the declared annotation types."""

    #: Annotation types read from ``inputCols``, in order (Spark NLP's class attribute).
    inputAnnotatorTypes: ClassVar[list[str]] = []
    optionalInputAnnotatorTypes: ClassVar[list[str]] = []
    #: Annotation type written to ``outputCol``.
    outputAnnotatorType: ClassVar[str | None] = None

    inputCols: Param[list[str]] = Param(
        Params._dummy(),
        "inputCols",
        "previous annotations columns, if renamed",
        typeConverter=TypeConverters.toListString,
    )
    outputCol: Param[str] = Param(
        Params._dummy(),
        "outputCol",
        "output annotation column. can be left default.",
        typeConverter=TypeConverters.toString,
    )
    lazyAnnotator: Param[bool] = Param(
        Params._dummy(),
        "lazyAnnotator",
        "Whether this AnnotatorModel acts as lazy in RecursivePipelines (kept for Spark NLP; no effect here)",
        typeConverter=TypeConverters.toBoolean,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(lazyAnnotator=False)

    def setInputCols(self: S, *value: Any) -> S:
        """Sets the input annotation columns: ``setInputCols("image_assembler")`` or ``(["image_assembler"])``."""
        cols = list(value[0]) if len(value) == 1 and isinstance(value[0], (list, tuple)) else list(value)
        self.inputColsValidation(cols)  # type: ignore[attr-defined]
        return self._set(inputCols=cols)

    def inputColsValidation(self, value: Any) -> None:
        """Refuses a number of columns that does not match ``inputAnnotatorTypes`` (as Spark NLP does)."""
        cols = list(value[0]) if len(value) == 1 and isinstance(value[0], (list, tuple)) else list(value)
        if not all(isinstance(c, str) for c in cols):
            raise TypeError("InputCols datatype not supported. It must be either str or list")
        expected = len(self.inputAnnotatorTypes)
        allowed = {expected, expected + len(self.optionalInputAnnotatorTypes)}
        if expected and len(cols) not in allowed:
            count = {1: "one", 2: "two"}.get(expected, str(expected))
            raise ConfigError(
                f"setInputCols: {type(self).__name__} reads exactly {count} annotation column(s), of type "
                f"{', '.join(self.inputAnnotatorTypes)}; got {len(cols)}: {cols}"
            )

    def getInputCols(self) -> list[str]:
        """The input annotation columns."""
        return list(self.getOrDefault(self.inputCols))

    def setOutputCol(self: S, value: str) -> S:
        """Sets the name of the annotation column to create."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The output annotation column."""
        return self.getOrDefault(self.outputCol)

    def setLazyAnnotator(self: S, value: bool) -> S:
        """Kept for Spark NLP's RecursivePipeline; no effect on these stages."""
        return self._set(lazyAnnotator=value)

    def getLazyAnnotator(self) -> bool:
        return self.getOrDefault(self.lazyAnnotator)


class ParamValueAccess(Params):
    """Spark NLP's ``getParamValue(name)`` / ``setParamValue(name)``: they return a getter / setter."""

    def getParamValue(self, paramName: str) -> Callable[[], Any]:
        """A function returning the param's value (``None`` when it has none), as in Spark NLP."""
        param = self.getParam(paramName)

        def getter() -> Any:
            return self.getOrDefault(param) if self.isDefined(param) else None

        return getter

    def setParamValue(self, paramName: str) -> Callable[[Any], Any]:
        """A function setting the param (through its validating setter when there is one), as in Spark NLP."""
        param = self.getParam(paramName)
        setter = getattr(self, "set" + paramName[0].upper() + paramName[1:], None)

        def set_value(value: Any) -> Any:
            return setter(value) if callable(setter) else self._set(**{param.name: value})

        return set_value


# -- Spark NLP's image properties -------------------------------------------------------------------
class HasBatchedAnnotateImage(Params):
    """``batchSize``: images per inference batch within a partition."""

    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "Size of every batch", TypeConverters.toInt)

    def setBatchSize(self: S, v: int) -> S:
        """Sets the number of images per inference batch (Spark NLP's default: 2)."""
        return self._set(batchSize=at_least(1, v, "batchSize"))

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)


class HasImageFeatureProperties(_PreprocessParams):
    """Spark NLP's preprocessing params; each setter is checked by :class:`PreprocessSpec`."""

    doResize: Param[bool] = Param(
        Params._dummy(), "doResize", "Whether to resize the input to a certain size", TypeConverters.toBoolean
    )
    doNormalize: Param[bool] = Param(
        Params._dummy(),
        "doNormalize",
        "Whether to normalize the input with mean and standard deviation",
        TypeConverters.toBoolean,
    )
    featureExtractorType: Param[str] = Param(
        Params._dummy(),
        "featureExtractorType",
        "Name of model's architecture for feature extraction (informative here: the model's spec decides)",
        TypeConverters.toString,
    )
    imageMean: Param[list[float]] = Param(
        Params._dummy(),
        "imageMean",
        "The sequence of means for each channel, to be used when normalizing images",
        TypeConverters.toListFloat,
    )
    imageStd: Param[list[float]] = Param(
        Params._dummy(),
        "imageStd",
        "The sequence of standard deviations for each channel, to be used when normalizing images",
        TypeConverters.toListFloat,
    )
    resample: Param[int] = Param(
        Params._dummy(),
        "resample",
        "Pillow resampling filter: 0 nearest, 2 bilinear, 3 bicubic (1 lanczos, 4 box, 5 hamming also work)",
        TypeConverters.toInt,
    )
    size: Param[int] = Param(
        Params._dummy(),
        "size",
        "Resize the input to (size, size) (the model's input side)",
        TypeConverters.toInt,
    )

    def setDoResize(self: S, value: bool) -> S:
        """Whether to resize (when false, images must already be size × size)."""
        return self._set_preprocess("doResize", value)  # type: ignore[attr-defined]

    def getDoResize(self) -> bool:
        return self.getOrDefault(self.doResize)

    def setDoNormalize(self: S, value: bool) -> S:
        """Whether to normalise with ``imageMean`` / ``imageStd``."""
        return self._set_preprocess("doNormalize", value)  # type: ignore[attr-defined]

    def getDoNormalize(self) -> bool:
        return self.getOrDefault(self.doNormalize)

    def setFeatureExtractorType(self: S, value: str) -> S:
        """Kept for Spark NLP; the preprocessing is the model's spec and the params above."""
        return self._set(featureExtractorType=value)

    def getFeatureExtractorType(self) -> str | None:
        return (
            self.getOrDefault(self.featureExtractorType)
            if self.isDefined(self.featureExtractorType)
            else None
        )

    def setImageMean(self: S, value: list[float]) -> S:
        """Per-channel (RGB) means on rescaled pixels."""
        return self._set_preprocess("imageMean", value)  # type: ignore[attr-defined]

    def getImageMean(self) -> list[float]:
        return list(self.getOrDefault(self.imageMean))

    def setImageStd(self: S, value: list[float]) -> S:
        """Per-channel (RGB) standard deviations on rescaled pixels (no zeros)."""
        return self._set_preprocess("imageStd", value)  # type: ignore[attr-defined]

    def getImageStd(self) -> list[float]:
        return list(self.getOrDefault(self.imageStd))

    def setResample(self: S, value: int) -> S:
        """Pillow's resampling filter code (``PIL.Image.BILINEAR`` = 2, ``BICUBIC`` = 3, ...)."""
        return self._set_preprocess("resample", value)  # type: ignore[attr-defined]

    def getResample(self) -> int:
        return self.getOrDefault(self.resample)

    def setSize(self: S, value: int) -> S:
        """Side of the model input, in pixels."""
        return self._set_preprocess("size", value)  # type: ignore[attr-defined]

    def getSize(self) -> int:
        return self.getOrDefault(self.size)


class HasRescaleFactor(_PreprocessParams):
    """``doRescale`` / ``rescaleFactor``: multiply pixel values (0–255) by the factor, normally 1/255."""

    doRescale: Param[bool] = Param(
        Params._dummy(),
        "doRescale",
        "Whether to rescale the image values by rescaleFactor.",
        TypeConverters.toBoolean,
    )
    rescaleFactor: Param[float] = Param(
        Params._dummy(), "rescaleFactor", "Factor to scale the image values", TypeConverters.toFloat
    )

    def setDoRescale(self: S, value: bool) -> S:
        """Whether to rescale the image values by ``rescaleFactor`` (default true)."""
        return self._set_preprocess("doRescale", value)  # type: ignore[attr-defined]

    def getDoRescale(self) -> bool:
        return self.getOrDefault(self.doRescale)

    def setRescaleFactor(self: S, value: float) -> S:
        """The factor pixel values are multiplied by (default 1/255)."""
        return self._set_preprocess("rescaleFactor", value)  # type: ignore[attr-defined]

    def getRescaleFactor(self) -> float:
        return self.getOrDefault(self.rescaleFactor)


class HasCropPct(_PreprocessParams):
    """``cropPct`` (Spark NLP's ConvNeXt param) and ``resizeMode`` (ours: how size and cropPct combine)."""

    cropPct: Param[float] = Param(
        Params._dummy(), "cropPct", "Percentage of the resized image to crop", TypeConverters.toFloat
    )
    resizeMode: Param[str] = Param(
        Params._dummy(),
        "resizeMode",
        "'crop' (short side to size/cropPct, centre crop), 'squash' (to size × size) or 'squash_crop'",
        TypeConverters.toString,
    )

    def setCropPct(self: S, value: float) -> S:
        """Fraction kept by the centre crop: the short side is resized to ``size / cropPct`` first."""
        return self._set_preprocess("cropPct", value)  # type: ignore[attr-defined]

    def getCropPct(self) -> float:
        return self.getOrDefault(self.cropPct)

    def setResizeMode(self: S, value: str) -> S:
        """``"crop"``, ``"squash"`` or ``"squash_crop"`` (see :class:`PreprocessSpec`)."""
        return self._set_preprocess("resizeMode", value)  # type: ignore[attr-defined]

    def getResizeMode(self) -> str:
        return self.getOrDefault(self.resizeMode)


class HasEngine(Params):
    """``engine``: the inference engine; always ONNX Runtime here."""

    engine: Param[str] = Param(
        Params._dummy(),
        "engine",
        "Deep Learning engine used for this model",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(engine="onnx")

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)


class HasConfigProtoBytes(Params):
    """``configProtoBytes``: TensorFlow session options in Spark NLP; accepted and unused (ONNX Runtime)."""

    configProtoBytes: Param[list[int]] = Param(
        Params._dummy(),
        "configProtoBytes",
        "ConfigProto from tensorflow, serialized into byte array (no effect: models run on ONNX Runtime)",
        TypeConverters.toListInt,
    )

    def setConfigProtoBytes(self: S, b: list[int]) -> S:
        """Kept for Spark NLP scripts; ONNX Runtime has no TensorFlow ConfigProto."""
        return self._set(configProtoBytes=b)

    def getConfigProtoBytes(self) -> list[int] | None:
        return (
            list(self.getOrDefault(self.configProtoBytes)) if self.isDefined(self.configProtoBytes) else None
        )


class HasCandidateLabelsProperties(Params):
    """``candidateLabels`` for zero-shot models, and Spark NLP's NLI label ids (unused by CLIP)."""

    candidateLabels: Param[list[str]] = Param(
        Params._dummy(),
        "candidateLabels",
        "labels each image is scored against (zero-shot); turned into prompts by the model's template",
        typeConverter=TypeConverters.toListString,
    )
    contradictionIdParam: Param[int] = Param(
        Params._dummy(),
        "contradictionIdParam",
        "NLI contradiction id (text models; unused)",
        TypeConverters.toInt,
    )
    entailmentIdParam: Param[int] = Param(
        Params._dummy(), "entailmentIdParam", "NLI entailment id (text models; unused)", TypeConverters.toInt
    )

    def setCandidateLabels(self: S, v: list[str] | str) -> S:
        """The labels to choose from (distinct, non-empty; a list, or one comma-separated string)."""
        from ..options import parse_candidate_labels

        return self._set(candidateLabels=list(parse_candidate_labels(v)))

    def getCandidateLabels(self) -> list[str]:
        """The candidate labels (empty until set)."""
        if not self.isDefined(self.candidateLabels):
            return []
        return list(self.getOrDefault(self.candidateLabels))

    def setContradictionIdParam(self: S, v: int) -> S:
        """Kept for Spark NLP (NLI text models); CLIP does not use it."""
        return self._set(contradictionIdParam=v)

    def setEntailmentIdParam(self: S, v: int) -> S:
        """Kept for Spark NLP (NLI text models); CLIP does not use it."""
        return self._set(entailmentIdParam=v)

    def getContradictionIdParam(self) -> int | None:
        return (
            self.getOrDefault(self.contradictionIdParam)
            if self.isDefined(self.contradictionIdParam)
            else None
        )

    def getEntailmentIdParam(self) -> int | None:
        return self.getOrDefault(self.entailmentIdParam) if self.isDefined(self.entailmentIdParam) else None


# -- ours -------------------------------------------------------------------------------------------
class HasTopK(Params):
    """``topK``: labels (with scores) kept per image in the metadata, best first."""

    #: The smallest value ``setTopK`` accepts (0 means "automatic" for the training stage).
    min_top_k: int = 1

    topK: Param[int] = Param(
        Params._dummy(), "topK", "labels kept per image in the metadata", TypeConverters.toInt
    )

    def setTopK(self: S, value: int) -> S:
        """How many labels (with scores) each annotation's metadata keeps, best first."""
        return self._set(topK=at_least(self.min_top_k, value, "topK"))  # type: ignore[attr-defined]

    def getTopK(self) -> int:
        return self.getOrDefault(self.topK)


class HasOnnxThreads(Params):
    """``onnxThreads``: ONNX Runtime threads per task (0: ``spark.task.cpus``)."""

    onnxThreads: Param[int] = Param(
        Params._dummy(),
        "onnxThreads",
        "ONNX Runtime threads per task (0: spark.task.cpus)",
        TypeConverters.toInt,
    )

    def setOnnxThreads(self: S, value: int) -> S:
        return self._set(onnxThreads=at_least(0, value, "onnxThreads"))

    def getOnnxThreads(self) -> int:
        return self.getOrDefault(self.onnxThreads)
