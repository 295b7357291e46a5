"""``ImageClassifierApproach``: train a classifier on a labelled DataFrame, as a Spark ML Estimator.

Spark NLP can only *run* pretrained image classifiers; this stage *fits* one. It goes in a Pipeline
like any Estimator, and ``fit`` returns the ordinary classifier stage
(:class:`~sparkvision.spark.classifier.ImageClassifierModel`) loaded on the trained model::

    from pyspark.ml import Pipeline
    from sparkvision.base import ImageAssembler
    from sparkvision.spark.approach import ImageClassifierApproach, read_labelled_images

    df = read_labelled_images(spark, "data/train")          # path, content, label (folder per class)
    assembler = ImageAssembler().setInputCol("content").setOutputCol("image_assembler")
    approach = ImageClassifierApproach().setInputCols(["image_assembler"]).setLabelCol("label") \\
        .setOutputCol("class").setBaseModel("efficientnet_lite0").setModelName("my_flowers")
    model = Pipeline().setStages([assembler, approach]).fit(df)   # a PipelineModel
    model.transform(spark.read.format("binaryFile").load("photos/")).select("class.result").show()

What ``fit`` does:

1. **Embeddings, distributed**: the base model runs on the executors through the same classifier
   stage and per-worker model cache as inference (``includeEmbeddings``), one pass over the data.
2. **The head**: with at most ``maxCollectRows`` labelled rows (default 100,000 — 0.5 GB of 1280-d
   float32 embeddings), the embeddings are collected to the driver and the same trainer as
   ``sparkvision train`` fits it (scikit-learn L-BFGS, ``C`` chosen on the validation split; or the
   numpy early-stopping head). Beyond that — or with ``headTrainer="mllib"`` — Spark MLlib's
   multinomial :class:`~pyspark.ml.classification.LogisticRegression` fits it on the cluster, with
   its ``regParam`` chosen on the validation split the same way.
3. **Export**: base + head fused into one ONNX model in the sparkvision format (the model cache when
   ``modelName`` is set, else a temporary directory), so the CLI, the web service and this stage all
   run it unchanged. ``PipelineModel.save`` copies the model into the saved pipeline.

Rows whose image cannot be read are left out of training (counted in ``summary``); rows with a null
label are refused, as is a single class. The returned stage carries ``summary`` (a dict: classes,
counts, validation accuracy, timings); the model's ``sparkvision.json`` keeps the same provenance.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import ConfigError
from ..models.catalogue import DEFAULT_MODEL
from ..tasks.classification import Classifier
from ..training.dataset import LabelledImages, check_label, discover_dataset
from ..training.head import DEFAULT_HEAD, HEAD_KINDS, LOGISTIC_C_GRID, HeadFit, LinearHead, fit_head
from ..training.trainer import check_target, export_trained_model, stratified_split
from .annotations import CATEGORY, IMAGE, is_annotation_array
from .assembler import ImageAssembler
from .classifier import ImageClassifierModel
from .functions import read_images
from .params import AnnotatorProperties, HasBatchedAnnotateImage, HasOnnxThreads, HasTopK, at_least

__all__ = ["ImageClassifierApproach", "read_labelled_images"]

log = logging.getLogger(__name__)

HEAD_TRAINERS = ("auto", "local", "mllib")


def read_labelled_images(spark: Any, root: str | Path, *, label_col: str = "label") -> DataFrame:
    """A folder-per-class data set as ``binaryFile`` rows plus a ``label`` column.

    Classes are the subfolders of ``root`` (found as ``sparkvision train`` finds them: hidden folders
    skipped, names Unicode-normalised, empty folders left out); each class folder is read recursively,
    keeping files with an image extension.
    """
    data = discover_dataset(root)
    if not data.classes:
        raise ConfigError(f"{root} has no class folder with images in it")
    frames = []
    for label in data.classes:
        folder = _class_folder(data, label)
        frames.append(read_images(spark, str(folder), recursive=True).withColumn(label_col, F.lit(label)))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    return frame


def _class_folder(data: LabelledImages, label: str) -> Path:
    index = data.classes.index(label)
    first = data.paths[data.targets.index(index)]
    assert data.root is not None
    return data.root / first.relative_to(data.root).parts[0]


class ImageClassifierApproach(
    Estimator,
    AnnotatorProperties,
    HasBatchedAnnotateImage,
    HasOnnxThreads,
    HasTopK,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Fits an image classifier for the labels of ``labelCol`` (see the module docstring).

    Params: ``inputCols`` (image annotation column, default ``["image_assembler"]``; a raw Spark
    image or binary column is also accepted and assembled on the fly), ``outputCol`` (the returned
    stage's output, ``"class"``), ``labelCol`` (``"label"``), ``baseModel`` (``"efficientnet_lite0"``),
    ``modelName`` (save into the model cache under this name; empty: a temporary directory),
    ``force`` (replace an existing model of that name), ``valSplit`` (0.2), ``seed`` (0), ``epochs``
    (0: the head's default), ``head`` (``"logistic"`` or ``"softmax"``, for local training),
    ``headTrainer`` (``"auto"``, ``"local"`` or ``"mllib"``), ``maxCollectRows`` (100000),
    ``regParam`` (MLlib head; 0: chosen on the validation split),
    ``batchSize`` (16, images per inference batch), ``onnxThreads`` (0: ``spark.task.cpus``),
    ``topK`` (the returned stage's; 0: min(5, classes)).
    """

    inputAnnotatorTypes: ClassVar[list[str]] = [IMAGE]
    outputAnnotatorType: ClassVar[str] = CATEGORY
    min_top_k = 0  # 0: min(5, classes)

    labelCol: Param[str] = Param(
        Params._dummy(), "labelCol", "column holding each image's class label", TypeConverters.toString
    )
    baseModel: Param[str] = Param(
        Params._dummy(),
        "baseModel",
        "model whose embeddings feed the head (name or directory)",
        TypeConverters.toString,
    )
    modelName: Param[str] = Param(
        Params._dummy(),
        "modelName",
        "name of the trained model in the model cache ('' : temporary)",
        TypeConverters.toString,
    )
    force: Param[bool] = Param(
        Params._dummy(), "force", "replace an existing model of that name", TypeConverters.toBoolean
    )
    valSplit: Param[float] = Param(
        Params._dummy(),
        "valSplit",
        "fraction of each class held out for validation (0: none)",
        TypeConverters.toFloat,
    )
    seed: Param[int] = Param(
        Params._dummy(), "seed", "seed for the split and the training", TypeConverters.toInt
    )
    epochs: Param[int] = Param(
        Params._dummy(), "epochs", "iteration cap of the head trainer (0: its default)", TypeConverters.toInt
    )
    head: Param[str] = Param(
        Params._dummy(),
        "head",
        "local head trainer: 'logistic' (scikit-learn) or 'softmax' (numpy)",
        TypeConverters.toString,
    )
    headTrainer: Param[str] = Param(
        Params._dummy(),
        "headTrainer",
        "'auto' (collect when small, else MLlib), 'local' (always collect) or 'mllib'",
        TypeConverters.toString,
    )
    maxCollectRows: Param[int] = Param(
        Params._dummy(),
        "maxCollectRows",
        "largest training set collected to the driver (auto)",
        TypeConverters.toInt,
    )
    regParam: Param[float] = Param(
        Params._dummy(),
        "regParam",
        "MLlib head: L2 regularisation (0: chosen on the validation split from a grid)",
        TypeConverters.toFloat,
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        labelCol: str | None = None,
        baseModel: str | None = None,
        modelName: str | None = None,
    ) -> None:
        super().__init__()
        self._setDefault(
            inputCols=["image_assembler"],
            outputCol="class",
            labelCol="label",
            baseModel=DEFAULT_MODEL,
            modelName="",
            force=False,
            valSplit=0.2,
            seed=0,
            epochs=0,
            head=DEFAULT_HEAD,
            headTrainer="auto",
            maxCollectRows=100_000,
            regParam=0.0,
            batchSize=16,
            onnxThreads=0,
            topK=0,
        )
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        self._set(**kwargs)

    # -- params: setters validate and return self; getters always work ------------------------------
    def setLabelCol(self, value: str) -> ImageClassifierApproach:
        return self._set(labelCol=value)

    def getLabelCol(self) -> str:
        return self.getOrDefault(self.labelCol)

    def setBaseModel(self, value: str) -> ImageClassifierApproach:
        return self._set(baseModel=value)

    def getBaseModel(self) -> str:
        return self.getOrDefault(self.baseModel)

    def setModelName(self, value: str) -> ImageClassifierApproach:
        if value:
            check_target(value, None, force=True)  # validates the name now; existence is checked at fit
        return self._set(modelName=value)

    def getModelName(self) -> str:
        return self.getOrDefault(self.modelName)

    def setForce(self, value: bool) -> ImageClassifierApproach:
        return self._set(force=value)

    def getForce(self) -> bool:
        return self.getOrDefault(self.force)

    def setValSplit(self, value: float) -> ImageClassifierApproach:
        if not 0 <= float(value) < 1:
            raise ConfigError(f"valSplit must be at least 0 and below 1, got {value!r}")
        return self._set(valSplit=float(value))

    def getValSplit(self) -> float:
        return self.getOrDefault(self.valSplit)

    def setSeed(self, value: int) -> ImageClassifierApproach:
        return self._set(seed=value)

    def getSeed(self) -> int:
        return self.getOrDefault(self.seed)

    def setEpochs(self, value: int) -> ImageClassifierApproach:
        return self._set(epochs=at_least(0, value, "epochs"))

    def getEpochs(self) -> int:
        return self.getOrDefault(self.epochs)

    def setHead(self, value: str) -> ImageClassifierApproach:
        if value not in HEAD_KINDS:
            raise ConfigError(f"head must be one of {', '.join(HEAD_KINDS)}, got {value!r}")
        return self._set(head=value)

    def getHead(self) -> str:
        return self.getOrDefault(self.head)

    def setHeadTrainer(self, value: str) -> ImageClassifierApproach:
        if value not in HEAD_TRAINERS:
            raise ConfigError(f"headTrainer must be one of {', '.join(HEAD_TRAINERS)}, got {value!r}")
        return self._set(headTrainer=value)

    def getHeadTrainer(self) -> str:
        return self.getOrDefault(self.headTrainer)

    def setMaxCollectRows(self, value: int) -> ImageClassifierApproach:
        return self._set(maxCollectRows=at_least(0, value, "maxCollectRows"))

    def getMaxCollectRows(self) -> int:
        return self.getOrDefault(self.maxCollectRows)

    def setRegParam(self, value: float) -> ImageClassifierApproach:
        if float(value) < 0:
            raise ConfigError(f"regParam must be at least 0, got {value!r}")
        return self._set(regParam=float(value))

    def getRegParam(self) -> float:
        return self.getOrDefault(self.regParam)

    # -- fit ----------------------------------------------------------------------------------------
    def _image_column(self, dataset: DataFrame) -> tuple[DataFrame, str]:
        """The annotation column to embed (assembling a raw image/binary column first if needed)."""
        cols = self.getInputCols()
        if len(cols) != 1:
            raise ConfigError(f"ImageClassifierApproach reads exactly one image column, got inputCols={cols}")
        fields = {f.name: f for f in dataset.schema.fields}
        column = cols[0]
        if column not in fields:
            raise ConfigError(
                f"ImageClassifierApproach: input column {column!r} not found (columns: {', '.join(fields)})"
            )
        if is_annotation_array(fields[column].dataType, IMAGE):
            return dataset, column
        assembled = f"__sparkvision_assembled_{self.uid}"
        return ImageAssembler(inputCol=column, outputCol=assembled).transform(dataset), assembled

    def _labelled_embeddings(self, dataset: DataFrame, base: ImageClassifierModel) -> DataFrame:
        label_col = self.getLabelCol()
        fields = {f.name: f for f in dataset.schema.fields}
        if label_col not in fields:
            raise ConfigError(
                f"ImageClassifierApproach: label column {label_col!r} not found (columns: {', '.join(fields)})"
            )
        if not isinstance(fields[label_col].dataType, (T.StringType, T.IntegralType, T.BooleanType)):
            raise ConfigError(
                f"label column {label_col!r} is {fields[label_col].dataType.simpleString()}; use string labels"
            )
        frame, image_col = self._image_column(dataset)
        embedded_col = f"__sparkvision_embedded_{self.uid}"
        base = base.copy()
        base.setInputCols([image_col]).setOutputCol(embedded_col).setIncludeEmbeddings(True).setTopK(1)
        base.setBatchSize(self.getBatchSize()).setOnnxThreads(self.getOnnxThreads())
        annotation = F.col(embedded_col)[0]
        return base.transform(frame).select(
            F.col(label_col).cast("string").alias("label"),
            annotation["metadata"]["origin"].alias("origin"),
            annotation["embeddings"].alias("embedding"),
            annotation["metadata"]["error"].alias("error"),
        )

    def _fit(self, dataset: DataFrame) -> ImageClassifierModel:
        started = time.perf_counter()
        name = self.getModelName()
        target: Path | None = check_target(name, None, self.getForce()) if name else None
        base_stage = ImageClassifierModel.pretrained(self.getBaseModel())
        base_spec = base_stage.getModelSpec()
        if not base_spec.has_embeddings:
            raise ConfigError(
                f"base model {base_spec.name!r} does not export embeddings; it cannot be trained on"
            )
        label_col = self.getLabelCol()
        if label_col in dataset.columns and dataset.where(F.col(label_col).isNull()).limit(1).count():
            raise ConfigError(
                f"label column {label_col!r} has null values; label every row or filter them out"
            )

        rows = self._labelled_embeddings(dataset, base_stage)
        trainer = self.getHeadTrainer()
        if trainer == "auto":
            trainer = "local" if dataset.count() <= self.getMaxCollectRows() else "mllib"
        embed_started = time.perf_counter()
        if trainer == "local":
            classes, fit, counts, failed = self._fit_local(rows)
        else:
            classes, fit, counts, failed = self._fit_mllib(rows)
        fit_seconds = time.perf_counter() - embed_started

        training = {
            "engine": "spark",
            "head_trainer": trainer,
            "rows": sum(counts["train"].values()) + sum(counts["val"].values()) + failed,
            "unreadable_images": failed,
            "train_counts": counts["train"],
            "val_counts": counts["val"],
            "validation": f"split {self.getValSplit():g}" if self.getValSplit() > 0 else "none",
            "seed": self.getSeed(),
            "head": fit.summary(),
        }
        model_name = name or f"trained_{self.uid}"
        if target is None:
            target = Path(tempfile.mkdtemp(prefix="sparkvision-trained-")) / model_name
            _remove_at_exit(target.parent)
        base_classifier = Classifier(base_stage.getModelPath())
        export_trained_model(
            target,
            name=model_name,
            base=base_classifier,
            fit=fit,
            classes=classes,
            training=training,
            force=self.getForce(),
        )
        stage = ImageClassifierModel.loadSavedModel(str(target))
        stage.setInputCols(self.getInputCols()).setOutputCol(self.getOutputCol())
        stage.setBatchSize(self.getBatchSize()).setOnnxThreads(self.getOnnxThreads())
        stage.setTopK(self.getTopK() or min(5, len(classes)))
        stage.summary = {  # type: ignore[attr-defined]
            **training,
            "classes": list(classes),
            "val_accuracy": fit.val_accuracy,
            "train_accuracy": fit.train_accuracy,
            "model_dir": str(target),
            "fit_seconds": round(fit_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return stage

    def _classes(self, labels: list[str]) -> tuple[str, ...]:
        classes = tuple(sorted({check_label(label) for label in labels}))
        if len(classes) < 2:
            found = f"only one class, {classes[0]!r}" if classes else "no readable labelled images"
            raise ConfigError(
                f"ImageClassifierApproach: found {found}; a classifier needs at least two classes"
            )
        return classes

    def _fit_local(self, rows: DataFrame) -> tuple[tuple[str, ...], HeadFit, dict[str, dict[str, int]], int]:
        frame = rows.toPandas()
        bad = frame["error"].notna() | frame["embedding"].map(lambda v: v is None or len(v) == 0)
        for origin, error in frame.loc[bad, ["origin", "error"]].head(20).itertuples(index=False):
            log.warning("skipping %s: %s", origin, error)
        good = frame.loc[~bad]
        classes = self._classes(list(good["label"]))
        index = {label: i for i, label in enumerate(classes)}
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in good["embedding"]])
        targets = [index[check_label(label)] for label in good["label"]]
        train_rows, val_rows = stratified_split(targets, classes, self.getValSplit(), self.getSeed())
        y = np.asarray(targets)
        fit = fit_head(
            vectors[train_rows],
            y[train_rows],
            len(classes),
            vectors[val_rows] if val_rows else None,
            y[val_rows] if val_rows else None,
            kind=self.getHead(),  # type: ignore[arg-type]
            epochs=self.getEpochs() or None,
            seed=self.getSeed(),
        )
        counts = {
            "train": _counts(classes, y[train_rows]),
            "val": _counts(classes, y[val_rows]) if val_rows else {},
        }
        return classes, fit, counts, int(bad.sum())

    def _fit_mllib(self, rows: DataFrame) -> tuple[tuple[str, ...], HeadFit, dict[str, dict[str, int]], int]:
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.evaluation import MulticlassClassificationEvaluator
        from pyspark.ml.functions import array_to_vector

        started = time.perf_counter()
        rows = rows.persist()
        try:
            ok = F.col("error").isNull() & (F.size("embedding") > 0)
            failed = rows.where(~ok).count()
            labels = [r["label"] for r in rows.where(ok).select("label").distinct().collect()]
            classes = self._classes(labels)
            mapping = F.create_map(
                *[F.lit(x) for label, i in zip(classes, range(len(classes))) for x in (label, i)]
            )
            data = rows.where(ok).select(
                array_to_vector("embedding").alias("features"),
                F.element_at(mapping, F.col("label")).cast("double").alias("target"),
            )
            split = self.getValSplit()
            if split > 0:
                train_df, val_df = data.randomSplit([1 - split, split], seed=self.getSeed())
            else:
                train_df, val_df = data, None
            train_counts = _spark_counts(train_df, classes)
            missing = [label for label, n in train_counts.items() if n == 0]
            if missing:
                raise ConfigError(
                    f"classes {', '.join(map(repr, missing))} got no training rows after the {split:g} "
                    "validation split; add images or lower valSplit"
                )
            n_train = sum(train_counts.values())
            epochs = self.getEpochs() or 100
            # scikit-learn's C on standardised features ⇔ MLlib regParam = 1 / (C · n): same grid.
            if self.getRegParam() > 0:
                grid = [self.getRegParam()]
            elif val_df is not None:
                grid = [1.0 / (c * n_train) for c in LOGISTIC_C_GRID]
            else:
                grid = [1.0 / n_train]
            log_loss = MulticlassClassificationEvaluator(
                labelCol="target",
                predictionCol="prediction",
                probabilityCol="probability",
                metricName="logLoss",
            )
            accuracy = MulticlassClassificationEvaluator(labelCol="target", metricName="accuracy")
            best: tuple[float, float, Any] | None = None
            history: list[dict[str, float]] = []
            for reg in grid:
                model = LogisticRegression(
                    featuresCol="features",
                    labelCol="target",
                    family="multinomial",
                    regParam=reg,
                    elasticNetParam=0.0,
                    standardization=True,
                    maxIter=epochs,
                ).fit(train_df)
                scored = model.transform(val_df if val_df is not None else train_df)
                loss = log_loss.evaluate(scored)
                history.append({"regParam": reg, "val_loss" if val_df is not None else "train_loss": loss})
                if best is None or loss < best[0]:
                    best = (loss, reg, model)
            assert best is not None
            loss, reg, model = best
            head = LinearHead(weight=model.coefficientMatrix.toArray(), bias=model.interceptVector.toArray())
            if head.num_classes != len(classes):
                raise ConfigError(f"MLlib fitted {head.num_classes} classes, expected {len(classes)}")
            val_accuracy = accuracy.evaluate(model.transform(val_df)) if val_df is not None else None
            fit = HeadFit(
                head=head,
                kind="mllib-logistic",
                settings={"regParam": reg, "regParam_grid": grid, "maxIter": epochs, "standardization": True},
                train_accuracy=accuracy.evaluate(model.transform(train_df)),
                val_accuracy=val_accuracy,
                val_loss=loss if val_df is not None else None,
                seconds=time.perf_counter() - started,
                history=history,
            )
            counts = {
                "train": train_counts,
                "val": _spark_counts(val_df, classes) if val_df is not None else {},
            }
            return classes, fit, counts, failed
        finally:
            rows.unpersist()


def _counts(classes: tuple[str, ...], y: np.ndarray) -> dict[str, int]:
    tally = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))
    return {label: int(tally[i]) for i, label in enumerate(classes)}


def _spark_counts(frame: DataFrame, classes: tuple[str, ...]) -> dict[str, int]:
    tally = {int(r["target"]): int(r["count"]) for r in frame.groupBy("target").count().collect()}
    return {label: tally.get(i, 0) for i, label in enumerate(classes)}


def _remove_at_exit(path: Path) -> None:
    import atexit

    atexit.register(shutil.rmtree, path, True)
