"""``loadSavedModel`` of the folder Spark NLP's ONNX notebooks write (``model.onnx`` + ``assets/labels.json``
+ ``assets/preprocessor_config.json``), loaded unchanged: a tiny random ViT exported with ``torch.onnx``
into exactly that layout gives the scores transformers gives, on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from import_helpers import hf_processor, our_outputs, photos_rgb

from sparkvision.errors import ModelImportError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("pyspark")

CLASSES = ["tabby, tabby cat", "rocket, projectile", "espresso"]


def _export_for_spark_nlp(folder: Path) -> object:
    """What the notebook does: export to model.onnx, then assets/preprocessor_config.json and
    assets/labels.json (label → id, as the notebook writes it). Returns the torch model."""
    id2label = dict(enumerate(CLASSES))
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
        patch_size=8, num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    model.classifier.weight.data *= 20  # spread the random head's logits
    folder.mkdir()
    with torch.no_grad():
        torch.onnx.export(
            model, (torch.randn(1, 3, 32, 32),), str(folder / "model.onnx"), input_names=["pixel_values"],
            output_names=["logits"], dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    assets = folder / "assets"
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2).save_pretrained(str(assets))
    (assets / "labels.json").write_text(json.dumps({label: i for i, label in id2label.items()}) + "\n")
    return model


def test_spark_nlp_onnx_export_loads_unchanged_and_matches_transformers(tmp_path, monkeypatch):
    from sparkvision.annotator import ViTForImageClassification

    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "home"))
    export = tmp_path / "vit_export"
    model = _export_for_spark_nlp(export)
    assert sorted(p.name for p in export.rglob("*") if p.is_file()) == [
        "labels.json", "model.onnx", "preprocessor_config.json",
    ]  # fmt: skip

    stage = ViTForImageClassification.loadSavedModel(str(export))
    assert stage.getClasses() == CLASSES
    assert (stage.getSize(), stage.getResample(), stage.getImageMean()) == (32, 2, [0.5, 0.5, 0.5])

    processor = hf_processor(export / "assets")  # transformers' own (Pillow) image processor
    with torch.no_grad():
        logits = model(**processor(images=photos_rgb(), return_tensors="pt")).logits
    [ours] = our_outputs(Path(stage.getModelPath()))  # our decoder, preprocessing and ONNX Runtime
    np.testing.assert_allclose(ours, logits.numpy(), atol=1e-4)
    assert [CLASSES[i] for i in ours.argmax(axis=1)] == [CLASSES[i] for i in logits.numpy().argmax(axis=1)]


def test_an_export_without_labels_says_what_is_missing(tmp_path, monkeypatch):
    from sparkvision.annotator import ViTForImageClassification

    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "home"))
    export = tmp_path / "vit_export"
    _export_for_spark_nlp(export)
    (export / "assets" / "labels.json").unlink()
    with pytest.raises(ModelImportError, match=r"no labels\.json or labels\.txt"):
        ViTForImageClassification.loadSavedModel(str(export))
