"""``loadSavedModel`` on a Hugging Face checkpoint folder: imported into the cache once (through
``sparkvision.importers.import_model``), then classified on ``local[2]`` exactly like the embedded
``Classifier``; and the default ``topK`` (5) on a model with fewer classes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sparkvision import Classifier
from sparkvision.annotator import ViTForImageClassification
from sparkvision.base import ImageAssembler, read_images
from sparkvision.errors import ConfigError, ModelImportError

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CLASSES = ["red panda", "teapot", "lighthouse"]
PRE_VIT = {"feature_extractor_type": "ViTFeatureExtractor", "do_normalize": True, "do_resize": True,
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224}  # fmt: skip


def _tiny_vit_checkpoint(directory: Path) -> Path:
    """A randomly initialised 3-class ViT saved as ``save_pretrained`` does, with ViT's processor config."""
    id2label = dict(enumerate(CLASSES))
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=224,
        patch_size=16, num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    model.classifier.weight.data *= 20  # spread the random head's logits: scores that differ per photo
    model.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PRE_VIT))
    return directory


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_vit_load_saved_model_imports_a_checkpoint_folder(spark, home, image_dirs, tmp_path):
    checkpoint = _tiny_vit_checkpoint(tmp_path / "tiny-vit")
    stage = ViTForImageClassification.loadSavedModel(str(checkpoint), spark)
    model_dir = Path(stage.getModelPath())
    assert model_dir.is_relative_to(home) and model_dir.name == "tiny-vit"
    assert stage.getClasses() == CLASSES
    assert (stage.getResample(), stage.getImageMean(), stage.getResizeMode()) == (2, [0.5] * 3, "squash")
    stamp = (model_dir / "model.onnx").stat().st_mtime_ns
    again = ViTForImageClassification.loadSavedModel(str(checkpoint), spark)
    assert again.getModelPath() == str(model_dir)
    assert (model_dir / "model.onnx").stat().st_mtime_ns == stamp  # found in the cache, not re-imported

    frame = ImageAssembler().setInputCol("content").transform(read_images(spark, str(image_dirs["good"])))
    result = stage.transform(frame).select("path", "class").collect()
    rows = {Path(r.path).name: r["class"][0] for r in result}
    expected = {Path(str(p.path)).name: p for p in Classifier(model_dir).classify(image_dirs["good_files"])}
    assert set(rows) == set(expected) and len(rows) == 4
    assert len({p.scores for p in expected.values()}) == 4
    for name, prediction in expected.items():
        meta = rows[name].metadata
        assert int(meta["top_k"]) == 3  # the default topK (5), lowered to the model's 3 classes
        assert rows[name].result == prediction.labels[0]
        for rank, (label, score) in enumerate(zip(prediction.labels, prediction.scores), start=1):
            assert meta[f"label_{rank}"] == label
            assert float(meta[f"score_{rank}"]) == pytest.approx(score, abs=1e-6)

    with pytest.raises(ConfigError, match="topK must be between 1 and 3"):
        stage.copy().setTopK(4).transform(frame)  # explicitly too large: still refused
    assert stage.copy().setTopK(2).transform(frame).first()["class"][0].metadata["top_k"] == "2"


def test_load_saved_model_without_the_import_extra(home, tmp_path, monkeypatch):
    checkpoint = _tiny_vit_checkpoint(tmp_path / "tiny-vit")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the import extra were not installed
    with pytest.raises(ModelImportError, match=r"not a sparkvision model directory.*sparkvision\[import\]"):
        ViTForImageClassification.loadSavedModel(str(checkpoint))
    assert not (home / "models" / "tiny-vit").exists()  # nothing half-written into the cache
