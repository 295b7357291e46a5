"""Multi-label models, image embeddings, and the ``import`` / ``embed`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from import_helpers import PHOTOS, hf_processor, photos_rgb, save_checkpoint  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.cli import cli  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.models.store import load_model_dir, models_root  # noqa: E402

pytestmark = pytest.mark.slow

PRE_VIT = {"image_processor_type": "ViTImageProcessor", "do_normalize": True, "do_resize": True,
           "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2, "size": {"height": 224, "width": 224}}  # fmt: skip
TAGS = ["indoor", "outdoor", "animal", "person", "food"]


def _vit(**config: Any) -> Any:
    torch.manual_seed(0)
    id2label = dict(enumerate(TAGS))
    return transformers.ViTForImageClassification(
        transformers.ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=224,
            patch_size=16,
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            **config,
        )
    ).eval()


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("multilabel")
    model = _vit(problem_type="multi_label_classification")
    checkpoint = save_checkpoint(model, PRE_VIT, root / "checkpoint", logit_std=3.0)
    pixels = hf_processor(checkpoint)(images=photos_rgb(), return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.sigmoid(model(**pixels).logits).numpy()  # what transformers users compute
    return checkpoint, import_model(checkpoint, "tags", output_dir=root / "model"), probabilities


def test_multi_label_scores_are_independent_sigmoids(multilabel: tuple[Path, Path, np.ndarray]) -> None:
    _, model_dir, expected = multilabel
    assert load_model_dir(model_dir).activation == "sigmoid"
    predictions = list(Classifier(model_dir).classify([str(p) for p in PHOTOS], top_k=len(TAGS)))
    sums = []
    for prediction, row in zip(predictions, expected):
        got = np.zeros(len(TAGS))
        got[list(prediction.class_ids)] = prediction.scores
        assert np.abs(got - row).max() <= 1e-4
        sums.append(sum(prediction.scores))
    assert any(abs(s - 1.0) > 0.1 for s in sums)  # not a softmax


def test_threshold_selects_every_label_above_it(multilabel: tuple[Path, Path, np.ndarray]) -> None:
    _, model_dir, expected = multilabel
    predictions = list(
        Classifier(model_dir).classify([str(p) for p in PHOTOS], top_k=len(TAGS), threshold=0.5)
    )
    counts = set()
    for prediction, row in zip(predictions, expected):
        assert set(prediction.labels) == {TAGS[i] for i in np.flatnonzero(row >= 0.5)}
        counts.add(len(prediction.labels))
    assert len(counts) > 1 or counts - {0, len(TAGS)}  # the threshold really selects

    result = CliRunner().invoke(
        cli, ["classify", *map(str, PHOTOS), "--model", str(model_dir), "--threshold", "0.5", "-k", "5", "-f", "jsonl", "-q"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record, row in zip(records, expected):
        assert set(record["labels"]) == {TAGS[i] for i in np.flatnonzero(row >= 0.5)}


def test_embeddings_are_the_features_entering_the_head(tmp_path: Path) -> None:
    model = _vit()
    checkpoint = save_checkpoint(model, PRE_VIT, tmp_path / "checkpoint")
    pixels = hf_processor(checkpoint)(images=photos_rgb(), return_tensors="pt")
    with torch.no_grad():
        expected = model.vit(**pixels).last_hidden_state[:, 0].numpy()  # ViT classifies the [CLS] token
    model_dir = import_model(checkpoint, "vit", output_dir=tmp_path / "model")
    predictions = list(Classifier(model_dir).embed([str(p) for p in PHOTOS]))
    got = np.stack([p.embedding for p in predictions])
    assert got.shape == (len(PHOTOS), 32)
    assert np.abs(got - expected).max() <= 1e-4
    assert all(len(p.labels) == 1 for p in predictions)


def test_import_command_and_models_list(tmp_home: Path, multilabel: tuple[Path, Path, np.ndarray]) -> None:
    checkpoint = multilabel[0]
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(checkpoint), "--name", "my_tags"])
    assert result.exit_code == 0, result.output
    assert f"imported my_tags → {models_root() / 'my_tags'}" in result.output
    assert "vit, 5 labels, 224 px squash (bilinear), activation sigmoid" in result.output

    listing = runner.invoke(cli, ["models", "list", "--json"])
    row = {r["name"]: r for r in json.loads(listing.output)}["my_tags"]
    assert (row["family"], row["input_size"], row["num_classes"], row["cached"]) == ("vit", 224, 5, True)
    assert row["source"] == f"local:{checkpoint.resolve()}"

    same = runner.invoke(cli, ["import", str(checkpoint), "--name", "my_tags"])
    assert same.exit_code == 0  # the same weights again: the existing model is kept
    relabel = ["import", str(checkpoint), "--name", "my_tags", "--labels", "imagenet-1k"]
    again = runner.invoke(cli, relabel)
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    forced = runner.invoke(cli, [*relabel, "--force"])
    assert forced.exit_code == 1 and "1000 labels for a model with 5 outputs" in forced.output
    assert load_model_dir(models_root() / "my_tags").num_classes == 5  # the failed import changed nothing

    missing = runner.invoke(cli, ["import", str(checkpoint.parent)])
    assert missing.exit_code == 1 and "error: " in missing.output and "no config.json" in missing.output


def test_embed_command_formats(tmp_path: Path, multilabel: tuple[Path, Path, np.ndarray]) -> None:
    model_dir = multilabel[1]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    paths = [str(PHOTOS[0]), str(broken), str(PHOTOS[1])]
    expected = np.stack([p.embedding for p in Classifier(model_dir).embed([paths[0], paths[2]])])
    runner = CliRunner()

    result = runner.invoke(cli, ["embed", *paths, "--model", str(model_dir), "-q"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == paths
    assert records[1]["embedding"] is None and records[1]["error"]
    assert np.allclose([records[0]["embedding"], records[2]["embedding"]], expected, atol=1e-6)

    npz = tmp_path / "emb.npz"
    result = runner.invoke(cli, ["embed", *paths, "--model", str(model_dir), "-f", "npz", "-o", str(npz)])
    assert result.exit_code == 0 and "3 images: 2 embedded, 1 failed" in result.output
    with np.load(npz) as data:
        assert data["embeddings"].shape == (3, 32) and np.isnan(data["embeddings"][1]).all()
        assert np.allclose(data["embeddings"][[0, 2]], expected, atol=1e-6)
        assert list(data["paths"]) == paths and data["errors"][1] and not data["errors"][0]

    import pyarrow.parquet as pq

    parquet = tmp_path / "emb.parquet"
    result = runner.invoke(cli, ["embed", *paths, "--model", str(model_dir), "-f", "parquet", "-o", str(parquet), "--strict"])  # fmt: skip
    assert result.exit_code == 1  # --strict: one image failed
    table = pq.read_table(parquet).to_pylist()
    assert [row["path"] for row in table] == paths and table[1]["embedding"] is None
    assert np.allclose(table[2]["embedding"], expected[1], atol=1e-6)
