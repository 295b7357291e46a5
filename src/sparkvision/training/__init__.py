"""Measure models and train your own: ``evaluate`` a model on labelled folders, ``train`` a new one.

Python API (the CLI's ``sparkvision evaluate`` / ``sparkvision train`` are thin layers over it)::

    from sparkvision.training import evaluate, train, write_report

    report = evaluate("data/val", model="efficientnet_lite0")       # folder-per-class
    print(report.top1_accuracy, report.most_confused[:3])
    write_report(report, "eval-report/")                               # report.md + confusion_matrix.png

    result = train("data/train", name="my_flowers", base="efficientnet_lite0")
    print(result.val_accuracy)                                        # then: Classifier.pretrained("my_flowers")

Training runs the base model once per image (embeddings cached on disk), fits a linear head, and saves
base + head as one ONNX model in the normal model format, so every front uses it unchanged. The
report plot needs matplotlib and the default head scikit-learn: ``pip install 'sparkvision[train]'``.
"""

from __future__ import annotations

from .dataset import LabelledImages, check_label, discover_dataset, labelled_images
from .embeddings import EmbeddingCache, Embeddings, embed_files, model_fingerprint
from .evaluation import ClassMatch, ClassMetrics, Evaluation, evaluate, map_classes
from .export import fuse_head
from .head import DEFAULT_HEAD, HEAD_KINDS, HeadFit, LinearHead, fit_head
from .report import write_report
from .trainer import TrainResult, split_train_val, train

__all__ = [
    "DEFAULT_HEAD",
    "HEAD_KINDS",
    "ClassMatch",
    "ClassMetrics",
    "EmbeddingCache",
    "Embeddings",
    "Evaluation",
    "HeadFit",
    "LabelledImages",
    "LinearHead",
    "TrainResult",
    "check_label",
    "discover_dataset",
    "embed_files",
    "evaluate",
    "fit_head",
    "fuse_head",
    "labelled_images",
    "map_classes",
    "model_fingerprint",
    "split_train_val",
    "train",
    "write_report",
]
