"""The image classifier stages: one implementation, thin Spark NLP-named subclasses.

:class:`ImageClassifierModel` is a ``pyspark.ml`` ``Model`` (a Transformer) holding nothing but
Params: the model directory (``modelPath``) and Spark NLP's preprocessing params, so that
``PipelineModel.save``/``load`` round-trip and a param changed after loading takes effect on the next
``transform``. ``pretrained()`` / ``loadSavedModel()`` set every preprocessing param from the model's
own ``sparkvision.json`` (so the getters tell the truth); the subclasses only change the defaults a
bare, model-less instance reports (Spark NLP's values) and the default pretrained name::

    classifier = ViTForImageClassification.loadSavedModel("exported/vit", spark) \\
        .setInputCols(["image_assembler"]).setOutputCol("class").setTopK(3)
    classifier.getSize(), classifier.getResample(), classifier.getClasses()[:2]

Params with Spark NLP's names and defaults: ``batchSize`` (2), ``doResize``, ``doNormalize``, ``size``
(224), ``imageMean``, ``imageStd``, ``resample`` (Pillow code: 0 nearest, 2 bilinear, 3 bicubic; 1, 4,
5 are also accepted), ``doRescale``, ``rescaleFactor`` (1/255), ``cropPct``. Ours: ``resizeMode``
(``"crop"``: short side to ``size / cropPct`` then centre crop; ``"squash"``: straight to size × size;
``"squash_crop"``), ``topK`` (5), ``includeEmbeddings`` (fill each annotation's ``embeddings`` with
the image embedding when the model exports one), ``onnxThreads`` (ONNX Runtime threads per task, 0 =
``spark.task.cpus``), ``modelPath``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar

from pyspark import keyword_only
from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    MLReadable,
    MLWritable,
)
from pyspark.sql import DataFrame

from ..errors import ConfigError, ModelImportError, ModelNotFoundError
from ..models.catalogue import DEFAULT_MODEL, get_entry, list_models, resolve_model
from ..models.spec import MODEL_FILE, ModelSpec
from ..models.store import is_model_dir, load_model_dir
from ..options import resolve_top_k
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from .annotations import (
    CATEGORY,
    IMAGE,
    category_annotations_column,
)
from .inference import ClassifyJob, make_classify_udf
from .model_stage import ModelDirStage, check_pretrained_args, saved_model_folder
from .params import (
    PREPROCESS_FIELDS,
    AnnotatorProperties,
    HasBatchedAnnotateImage,
    HasConfigProtoBytes,
    HasCropPct,
    HasEngine,
    HasImageFeatureProperties,
    HasOnnxThreads,
    HasRescaleFactor,
    HasTopK,
    ParamValueAccess,
)
from .persistence import file_stamp, model_spec

__all__ = [
    "ConvNextForImageClassification",
    "EfficientNetForImageClassification",
    "ImageClassifierModel",
    "SwinForImageClassification",
    "ViTForImageClassification",
    "import_saved_model",
]

log = logging.getLogger(__name__)


# -- where loadSavedModel plugs into the model importers -------------------------------------------
def import_saved_model(folder: str | Path, family: str | None = None) -> tuple[Path, ModelSpec]:
    """Turn what ``loadSavedModel(folder, spark)`` was given into a model directory and its spec.

    A sparkvision model directory (``model.onnx`` + ``sparkvision.json``) is used as it is. Anything
    else (a Hugging Face ``save_pretrained`` folder, a timm hub folder, an ``.onnx`` file that carries
    no preprocessing is refused by the importer) goes through
    :func:`sparkvision.importers.import_model`, which converts it once into the model cache (named
    after the folder) and returns the cached directory on later calls with the same weights.
    ``family`` is the stage's family (``"vit"``, ``"swin"``, ``"convnext"``, ``"efficientnet_lite"``,
    ``"clip"``) or ``None`` for the generic stage; the importer reads the family from the checkpoint.
    """
    path = Path(folder).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"loadSavedModel: {path} does not exist")
    if is_model_dir(path):
        return path, load_model_dir(path)
    try:
        from ..importers import import_model
    except ImportError as exc:  # pragma: no cover - the importers' own imports are light
        raise ModelImportError(f"loadSavedModel: the model importers cannot be loaded ({exc})") from exc
    try:
        model_dir = import_model(path)
    except ImportError as exc:  # torch / transformers / timm: the import extra
        raise ModelImportError(
            f"loadSavedModel: {path} is not a sparkvision model directory, and converting it needs the "
            f"import extra ({exc.name or exc}): pip install 'sparkvision[import]', or convert it "
            "elsewhere with `sparkvision import` and pass the resulting directory"
        ) from exc
    except ModelImportError as exc:
        raise ModelImportError(
            f"loadSavedModel: {path} is not a sparkvision model directory (model.onnx + "
            f"sparkvision.json) and could not be imported: {exc}"
        ) from exc
    return model_dir, load_model_dir(model_dir)


# -- driver-side model facts, cached per file version ------------------------------------------------
_INPUT_SIZES: dict[tuple[str, int, int], tuple[int | None, int | None]] = {}


def _onnx_input_size(model_dir: Path) -> tuple[int | None, int | None]:
    """The fixed height/width of the model's image input, ``None`` where it is dynamic."""
    model_file = model_dir / MODEL_FILE
    key = file_stamp(model_file)
    if key not in _INPUT_SIZES:
        import onnx

        graph = onnx.load(str(model_file), load_external_data=False).graph
        initialisers = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initialisers]
        dims = inputs[0].type.tensor_type.shape.dim if inputs else []
        sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        _INPUT_SIZES[key] = (sizes[2], sizes[3]) if len(sizes) == 4 else (None, None)
    return _INPUT_SIZES[key]


def _available_models() -> str:
    return ", ".join(row.name for row in list_models()) or "none"


class ImageClassifierModel(
    Model,
    AnnotatorProperties,
    HasBatchedAnnotateImage,
    HasImageFeatureProperties,
    HasRescaleFactor,
    HasCropPct,
    HasEngine,
    HasConfigProtoBytes,
    HasTopK,
    HasOnnxThreads,
    ParamValueAccess,
    ModelDirStage,
    MLReadable,
    MLWritable,
):
    """Classifies the images of an image annotation column (see the module docstring)."""

    #: Family of the models this class is meant for (``None``: any).
    family: ClassVar[str | None] = None
    #: The name ``pretrained()`` uses when given none.
    default_pretrained: ClassVar[str] = DEFAULT_MODEL
    #: Param defaults of a model-less instance (Spark NLP's values for the family).
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 2,
        "imageMean": [0.5, 0.5, 0.5],
        "imageStd": [0.5, 0.5, 0.5],
        "cropPct": 1.0,
        "resizeMode": "squash",
    }

    #: Spark NLP's class attributes: the stage's name and its annotation types.
    name: ClassVar[str] = "ImageClassifierModel"
    inputAnnotatorTypes: ClassVar[list[str]] = [IMAGE]
    outputAnnotatorType: ClassVar[str] = CATEGORY

    includeEmbeddings: Param[bool] = Param(
        Params._dummy(),
        "includeEmbeddings",
        "fill each annotation's embeddings with the image embedding (models that export one)",
        TypeConverters.toBoolean,
    )
    modelPath: Param[str] = Param(
        Params._dummy(), "modelPath", "local sparkvision model directory", TypeConverters.toString
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        batchSize: int | None = None,
        topK: int | None = None,
        modelPath: str | None = None,
    ) -> None:
        super().__init__()
        self._setDefault(
            inputCols=["image_assembler"],
            outputCol="class",
            batchSize=2,
            doResize=True,
            doNormalize=True,
            doRescale=True,
            rescaleFactor=1 / 255,
            topK=5,
            includeEmbeddings=False,
            onnxThreads=0,
            **self.family_defaults,
        )
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        if "modelPath" in kwargs:  # first: it sets every preprocessing param from the model
            self.setModelPath(kwargs.pop("modelPath"))
        self.setParams(**kwargs)

    def setParams(self, **kwargs: Any) -> ImageClassifierModel:
        """Set several params at once (validated like the individual setters)."""
        for name, value in kwargs.items():
            setter = getattr(self, "set" + name[0].upper() + name[1:], None)
            if setter is None or not self.hasParam(name):
                raise ConfigError(f"{type(self).__name__} has no param {name!r}")
            setter(value)
        return self

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def pretrained(
        cls,
        name: str | None = None,
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> ImageClassifierModel:
        """A stage for a catalogue or cached model name (default: the class's default model).

        Names are sparkvision's (``sparkvision models list``) or Spark NLP Models Hub names of models
        that came from Hugging Face (``image_classifier_vit_base_patch16_224``, ``clip_vit_large_patch14``,
        ...): each maps to its Hugging Face repo, converted on first use (once, with network) or found in
        the cache where it was imported. ``lang`` is ``"en"`` (or ``"xx"``) as for every Spark NLP
        image model; ``remote_loc`` may name Spark NLP's open-source repository (``"public/models"``),
        whose models are fetched from their Hugging Face origin; ``engine`` is accepted for Spark NLP
        scripts (always ONNX Runtime here).
        """
        return cls._pretrained(name or cls.default_pretrained, lang, remote_loc, engine)

    @classmethod
    def _pretrained(cls, name: str, lang: str, remote_loc: str | None, engine: str) -> ImageClassifierModel:
        check_pretrained_args(
            cls.__name__,
            name,
            lang,
            remote_loc,
            engine,
            published="its image classifiers",
            elsewhere=(
                "sparkvision maps Spark NLP's open-source models (public/models) to their Hugging Face origin. "
                "Export the model you have (a Hugging Face checkpoint, or a Spark NLP ONNX export folder with "
                "model.onnx and assets/) and load it with loadSavedModel(folder, spark), or "
                "`sparkvision import FOLDER --name NAME` then pretrained(NAME)"
            ),
        )
        try:
            model_dir, spec = resolve_model(name)
        except ModelNotFoundError as exc:
            message = str(exc).rstrip()
            message += "" if message.endswith(".") else "."
            if get_entry(name) is None:
                message += (
                    f" Available models: {_available_models()}. For another Spark NLP Models Hub model, take "
                    "its Hugging Face checkpoint (the model page's References) or your Spark NLP ONNX export "
                    f"folder and run `sparkvision import FOLDER --name {name}` (then pretrained({name!r}) finds "
                    "it), or load the folder directly with loadSavedModel(folder, spark)."
                )
            raise ModelNotFoundError(message) from exc
        return cls._from_model(model_dir, spec)

    @classmethod
    def loadSavedModel(cls, folder: str, spark_session: Any = None) -> ImageClassifierModel:
        """A stage for a model folder, local or on any Hadoop filesystem Spark can read (``hdfs://``...;
        then ``spark_session`` is needed to copy it): a sparkvision model directory, a Hugging Face or
        timm checkpoint, or a Spark NLP ONNX export folder (``model.onnx`` + ``assets/``), the last
        three converted once into the model cache."""
        model_dir, spec = import_saved_model(saved_model_folder(folder, spark_session), cls.family)
        return cls._from_model(model_dir, spec)

    @classmethod
    def _from_model(cls, model_dir: Path, spec: ModelSpec) -> ImageClassifierModel:
        if spec.task != "classification":
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model; {cls.__name__} needs a classification model "
                "(use CLIPForZeroShotClassification with setCandidateLabels for zero-shot models)"
            )
        if cls.family is not None and spec.family != cls.family:
            log.warning(
                "%s loaded model %r of family %r (expected %r); its own preprocessing is used",
                cls.__name__,
                spec.name,
                spec.family,
                cls.family,
            )
        stage = cls()
        stage._load_model_params(model_dir, spec)
        return stage

    def _load_model_params(self, model_dir: Path, spec: ModelSpec) -> None:
        """Point at a model and set every preprocessing param from its spec."""
        values = {
            param: to_param(getattr(spec.preprocess, field))
            for param, (field, _, to_param) in PREPROCESS_FIELDS.items()
        }
        self._set(modelPath=str(model_dir), **values)

    # -- the model ----------------------------------------------------------------------------------
    def _model_dir(self) -> Path:
        if not self.isDefined(self.modelPath):
            raise ConfigError(
                f"{type(self).__name__} has no model: create it with .pretrained(name) or "
                ".loadSavedModel(path, spark)"
            )
        return Path(self.getModelPath())

    def getModelSpec(self) -> ModelSpec:
        """The model's spec with the current params applied (what ``transform`` will use)."""
        model_dir = self._model_dir()
        spec = model_spec(model_dir)
        fields = {
            field: to_spec(self.getOrDefault(param))
            for param, (field, to_spec, _) in PREPROCESS_FIELDS.items()
        }
        try:
            preprocess = dataclasses.replace(spec.preprocess, **fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{type(self).__name__}: invalid preprocessing params: {exc}") from exc
        # Reading the graph costs a parse of the whole file: only when the size differs from the spec's.
        height, width = (
            (None, None) if preprocess.size == spec.preprocess.size else _onnx_input_size(model_dir)
        )
        if any(side is not None and side != self.getSize() for side in (height, width)):
            raise ConfigError(
                f"model {spec.name!r} takes {height}×{width} inputs; size={self.getSize()} cannot be used"
            )
        return spec.with_changes(preprocess=preprocess)

    def getClasses(self) -> list[str]:
        """The model's labels, in output order."""
        return list(model_spec(self._model_dir()).labels)

    # -- transform --------------------------------------------------------------------------------
    def _job(self, model_ref: str) -> ClassifyJob:
        spec = self.getModelSpec()
        requested = self.getTopK() if self.isSet(self.topK) else None
        top_k = resolve_top_k(requested, spec.num_classes, name="topK")
        if self.getIncludeEmbeddings() and not spec.has_embeddings:
            raise ConfigError(f"model {spec.name!r} does not export image embeddings")
        return ClassifyJob(
            model_ref=model_ref,
            preprocess=spec.preprocess.to_dict(),
            top_k=top_k,
            batch_size=self.getBatchSize(),
            embeddings=self.getIncludeEmbeddings(),
            threads=self.getOnnxThreads(),
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self._annotate_images(dataset, make_classify_udf, category_annotations_column, CATEGORY)

    # -- our params (the shared ones come from the mixins in .params) -----------------------------
    def setIncludeEmbeddings(self, value: bool) -> ImageClassifierModel:
        return self._set(includeEmbeddings=value)

    def getIncludeEmbeddings(self) -> bool:
        return self.getOrDefault(self.includeEmbeddings)

    def setModelPath(self, value: str) -> ImageClassifierModel:
        """Point at another local model directory (its preprocessing params are loaded too)."""
        path = Path(value)
        self._load_model_params(path, model_spec(path))
        return self

    def getModelPath(self) -> str:
        return self.getOrDefault(self.modelPath)


# -- the Spark NLP-named stages -------------------------------------------------------------------
class EfficientNetForImageClassification(ImageClassifierModel):
    """EfficientNet-Lite image classification (ImageNet-1k); ``pretrained()`` is ``efficientnet_lite0``."""

    name: ClassVar[str] = "EfficientNetForImageClassification"
    family = "efficientnet_lite"
    default_pretrained = "efficientnet_lite0"
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 3,
        "imageMean": [0.5, 0.5, 0.5],
        "imageStd": [0.5, 0.5, 0.5],
        "cropPct": 0.875,
        "resizeMode": "crop",
    }

    @classmethod
    def pretrained(
        cls,
        name: str = "efficientnet_lite0",
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> EfficientNetForImageClassification:
        """Spark NLP's signature and default name; see :meth:`ImageClassifierModel.pretrained`."""
        return cls._pretrained(name, lang, remote_loc, engine)  # type: ignore[return-value]


class ViTForImageClassification(ImageClassifierModel):
    """Vision Transformer classification (Hugging Face ViT checkpoints, imported)."""

    name: ClassVar[str] = "ViTForImageClassification"
    family = "vit"
    default_pretrained = "image_classifier_vit_base_patch16_224"
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 2,
        "imageMean": [0.5, 0.5, 0.5],
        "imageStd": [0.5, 0.5, 0.5],
        "cropPct": 1.0,
        "resizeMode": "squash",
    }

    @classmethod
    def pretrained(
        cls,
        name: str = "image_classifier_vit_base_patch16_224",
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> ViTForImageClassification:
        """Spark NLP's signature and default name; see :meth:`ImageClassifierModel.pretrained`."""
        return cls._pretrained(name, lang, remote_loc, engine)  # type: ignore[return-value]


class SwinForImageClassification(ImageClassifierModel):
    """Swin Transformer classification (Hugging Face Swin checkpoints, imported)."""

    name: ClassVar[str] = "SwinForImageClassification"
    family = "swin"
    default_pretrained = "image_classifier_swin_base_patch4_window7_224"
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 3,
        "imageMean": list(IMAGENET_MEAN),
        "imageStd": list(IMAGENET_STD),
        "cropPct": 1.0,
        "resizeMode": "squash",
    }

    @classmethod
    def pretrained(
        cls,
        name: str = "image_classifier_swin_base_patch4_window7_224",
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> SwinForImageClassification:
        """Spark NLP's signature and default name; see :meth:`ImageClassifierModel.pretrained`."""
        return cls._pretrained(name, lang, remote_loc, engine)  # type: ignore[return-value]


class ConvNextForImageClassification(ImageClassifierModel):
    """ConvNeXt classification (Hugging Face ConvNeXt checkpoints, imported)."""

    name: ClassVar[str] = "ConvNextForImageClassification"
    family = "convnext"
    default_pretrained = "image_classifier_convnext_tiny_224_local"
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 3,
        "imageMean": list(IMAGENET_MEAN),
        "imageStd": list(IMAGENET_STD),
        "cropPct": 224 / 256,
        "resizeMode": "crop",
    }

    @classmethod
    def pretrained(
        cls,
        name: str = "image_classifier_convnext_tiny_224_local",
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> ConvNextForImageClassification:
        """Spark NLP's signature and default name; see :meth:`ImageClassifierModel.pretrained`."""
        return cls._pretrained(name, lang, remote_loc, engine)  # type: ignore[return-value]
