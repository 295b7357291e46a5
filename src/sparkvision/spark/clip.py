"""``CLIPForZeroShotClassification``: the classifier stage for zero-shot (CLIP) models.

It is the image classifier stage (:class:`~.classifier.ImageClassifierModel`: same params, same
category annotations, same executors, persistence and ``LightPipeline``) plus one param,
``candidateLabels``: the labels each image is scored against, chosen at run time::

    clip = CLIPForZeroShotClassification.pretrained("zero_shot_classifier_clip_vit_base_patch32") \\
        .setInputCols(["image_assembler"]).setOutputCol("label") \\
        .setCandidateLabels(["a cat", "a dog", "a car"])

Each image's scores are the core's (:meth:`sparkvision.Classifier.classify` with
``candidate_labels``): a softmax over the labels of CLIP's scaled cosine similarities. As in Spark NLP,
the labels are encoded as written (``promptTemplate`` ``"{}"``: give ``"a photo of a bird"``, not
``"bird"``); ``setPromptTemplate("a photo of a {}")`` turns bare labels into CLIP's usual prompts, as
the CLI and the Python API do by default. The executors call that core; it
computes the labels' text embeddings once per Python worker and label set, and caches them.

``topK`` defaults to 5 and is lowered to the number of candidate labels when left at its default; a
``topK`` set explicitly above that number is refused before any job runs, as is a transform without
candidate labels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters

from ..errors import ConfigError
from ..models.spec import ModelSpec
from ..tasks.zero_shot import prompts_for
from .classifier import ImageClassifierModel
from .inference import ClassifyJob
from .params import HasCandidateLabelsProperties

__all__ = ["CLIP_MEAN", "CLIP_STD", "CLIPForZeroShotClassification"]

#: OpenAI CLIP's normalisation (its ``preprocessor_config.json``; Spark NLP's CLIP defaults).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class CLIPForZeroShotClassification(ImageClassifierModel, HasCandidateLabelsProperties):
    """Zero-shot image classification with a CLIP model against ``candidateLabels`` (module docstring)."""

    name: ClassVar[str] = "CLIPForZeroShotClassification"
    family = "clip"
    default_pretrained = "zero_shot_classifier_clip_vit_base_patch32"
    #: Spark NLP's defaults, bilinear included (a loaded model sets its own: OpenAI CLIP is bicubic).
    family_defaults: ClassVar[dict[str, Any]] = {
        "size": 224,
        "resample": 2,
        "imageMean": CLIP_MEAN,
        "imageStd": CLIP_STD,
        "cropPct": 1.0,
        "resizeMode": "crop",
    }

    promptTemplate: Param[str] = Param(
        Params._dummy(),
        "promptTemplate",
        "text each candidate label becomes, '{}' standing for the label ('{}': the label as written, as "
        "Spark NLP encodes it; 'a photo of a {}': CLIP's usual prompt)",
        TypeConverters.toString,
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
        candidateLabels: list[str] | None = None,
    ) -> None:
        kwargs = dict(self._input_kwargs)
        labels = kwargs.pop("candidateLabels", None)
        super().__init__(**kwargs)
        self._setDefault(promptTemplate="{}")
        if labels is not None:
            self.setCandidateLabels(labels)

    @classmethod
    def pretrained(
        cls,
        name: str = "zero_shot_classifier_clip_vit_base_patch32",
        lang: str = "en",
        remote_loc: str | None = None,
        engine: str = "onnx",
    ) -> CLIPForZeroShotClassification:
        """Spark NLP's signature and default name; see :meth:`ImageClassifierModel.pretrained`."""
        return cls._pretrained(name, lang, remote_loc, engine)  # type: ignore[return-value]

    # -- the model must be a zero-shot one ------------------------------------------------------------
    @classmethod
    def _from_model(cls, model_dir: Path, spec: ModelSpec) -> CLIPForZeroShotClassification:
        if spec.task != "zero-shot":
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model with fixed labels; {cls.__name__} needs a "
                "zero-shot (CLIP) model: use an *ForImageClassification stage for this one"
            )
        stage = cls()
        stage._load_model_params(model_dir, spec)
        return stage

    # -- candidate labels (the params come from HasCandidateLabelsProperties) ----------------------
    def setPromptTemplate(self, value: str) -> CLIPForZeroShotClassification:
        """How each label becomes text: ``"{}"`` (default, Spark NLP's way: labels are prompts already,
        e.g. ``"a photo of a bird"``) or a template such as ``"a photo of a {}"`` for bare labels."""
        prompts_for(["label"], value)  # validates: the template must hold "{}"
        return self._set(promptTemplate=value)

    def getPromptTemplate(self) -> str:
        return self.getOrDefault(self.promptTemplate)

    def getClasses(self) -> list[str]:
        """The labels annotations can carry: the candidate labels."""
        return self.getCandidateLabels()

    def _required_labels(self) -> list[str]:
        labels = self.getCandidateLabels()
        if not labels:
            raise ConfigError(
                f"{type(self).__name__} needs candidate labels to choose from: call "
                "setCandidateLabels(['a cat', 'a dog', ...]) before transform"
            )
        return labels

    # -- hooks into the classifier stage --------------------------------------------------------------
    def getModelSpec(self) -> ModelSpec:
        """The model's spec with the current params applied; its labels are the candidate labels."""
        spec = super().getModelSpec()
        labels = self.getCandidateLabels()
        return spec.with_changes(labels=tuple(labels)) if labels else spec

    def _job(self, model_ref: str) -> ClassifyJob:
        labels = self._required_labels()  # first: the checks below count the candidate labels
        job = super()._job(model_ref)
        return dataclasses.replace(
            job, candidate_labels=tuple(labels), prompt_template=self.getPromptTemplate()
        )
