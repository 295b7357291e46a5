"""``train`` end to end on real photos: accuracy on unseen photos, the fused model, caching, reproducibility.

What the main test proves: from 180 small real photos of three classes that ImageNet-1k cannot name
("face", "background", "texture" — it has no person, face or texture class), a linear head on
EfficientNet-Lite0 embeddings classifies ≥ 90 % of 100 validation images correctly, where every
validation image comes from a photo that no training image was cut from (other LFW news photos;
gravel textures when training saw only brick and grass). The base model's own top-1 labels, mapped
to our classes as well as the training data allows, do far worse on the same images. The exported
model is then used unchanged by the ordinary classifier, CLI and evaluator, and gives the same answers.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from sparkvision import Classifier
from sparkvision.cli import cli
from sparkvision.models.store import models_root
from sparkvision.training import (
    EmbeddingCache,
    LabelledImages,
    TrainResult,
    discover_dataset,
    embed_files,
    evaluate,
    train,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings") / "embeddings.sqlite"


@pytest.fixture(scope="module")
def trained(faces_data: tuple[Path, Path], cache_file: Path) -> TrainResult:
    train_dir, val_dir = faces_data
    return train(train_dir, name="faces_e2e", val=val_dir, seed=0, cache=EmbeddingCache(cache_file))


def _imagenet_baseline(lite0: Classifier, train_dir: Path, val_dir: Path, cache_file: Path) -> float:
    """Val accuracy of lite0's own top-1 ImageNet label, each label mapped to its majority class in
    training. The labels come from the cached embeddings through lite0's own classifier weights
    (``logits = embeddings · Wᵀ + b``), so no image is run through the network twice."""
    initializers = {i.name: i for i in onnx.load(str(lite0.model_dir / "model.onnx")).graph.initializer}
    weight = onnx.numpy_helper.to_array(initializers["_fc.weight"])
    bias = onnx.numpy_helper.to_array(initializers["_fc.bias"])

    def top1(data: LabelledImages) -> np.ndarray:
        vectors = embed_files(lite0, list(data.paths), cache=EmbeddingCache(cache_file)).vectors
        return (vectors @ weight.T + bias).argmax(axis=1)

    train_set, val_set = discover_dataset(train_dir), discover_dataset(val_dir)
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for label, target in zip(top1(train_set), train_set.targets):
        votes[int(label)][train_set.classes[target]] += 1
    hits = 0
    for label, target in zip(top1(val_set), val_set.targets):
        guess = votes.get(int(label))
        hits += guess is not None and guess.most_common(1)[0][0] == val_set.classes[target]
    return hits / len(val_set)


def test_reaches_90_percent_on_photos_it_never_saw(
    trained: TrainResult, lite0: Classifier, faces_data: tuple[Path, Path], cache_file: Path
) -> None:
    assert trained.classes == ("background", "face", "texture")
    assert trained.train_counts == {"background": 60, "face": 60, "texture": 60}
    assert trained.val_counts == {"background": 40, "face": 40, "texture": 20}
    assert trained.val_accuracy is not None and trained.val_accuracy >= 0.90
    assert min(trained.per_class_val_accuracy.values()) >= 0.85
    baseline = _imagenet_baseline(lite0, *faces_data, cache_file)
    assert baseline < trained.val_accuracy - 0.2, baseline


def test_the_fused_model_is_an_ordinary_model(
    trained: TrainResult, lite0: Classifier, faces_data: tuple[Path, Path]
) -> None:
    _, val_dir = faces_data
    assert trained.model_dir == models_root() / "faces_e2e"
    model = Classifier.pretrained("faces_e2e")
    spec = model.spec
    assert spec.labels == ("background", "face", "texture")
    assert spec.family == "efficientnet_lite+linear"
    assert spec.preprocess == lite0.spec.preprocess
    assert spec.outputs == ("logits", "embeddings")
    assert spec.extra["base_model"] == "efficientnet_lite0"
    assert spec.extra["training"]["train_counts"] == trained.train_counts

    graph = onnx.load(str(trained.model_dir / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["logits", "embeddings"]
    assert graph.node[-1].op_type == "Gemm" and graph.node[-1].output == ["logits"]
    assert "_fc.weight" not in {i.name for i in graph.initializer}  # the ImageNet classifier is gone

    paths = sorted(val_dir.glob("*/*.png"))[::9]
    fused = list(model.classify(paths, top_k=3, embeddings=True))
    base = list(lite0.embed(paths))
    for f, b in zip(fused, base):
        np.testing.assert_allclose(f.embedding, b.embedding, rtol=1e-4, atol=1e-5)
        expected = trained.fit.head.logits(b.embedding[None])[0]
        assert f.class_ids[0] == int(expected.argmax())
        assert sum(f.scores) == pytest.approx(1.0, abs=1e-5)

    # The evaluator on the validation folder agrees with the training summary.
    assert evaluate(val_dir, "faces_e2e").top1_accuracy == pytest.approx(trained.val_accuracy)
    # And the CLI classifies with it by name.
    faces = [str(p) for p in sorted((val_dir / "face").iterdir())[:8]]
    out = CliRunner().invoke(cli, ["classify", *faces, "--model", "faces_e2e", "-f", "json", "-k", "3"])
    assert out.exit_code == 0, out.output
    labels = [row["labels"][0] for row in json.loads(out.stdout)]
    assert len(labels) == 8 and labels.count("face") >= 7


def test_second_run_reuses_embeddings_and_is_reproducible(
    trained: TrainResult, faces_data: tuple[Path, Path], cache_file: Path, tmp_path: Path
) -> None:
    train_dir, val_dir = faces_data
    assert trained.from_cache == 0
    again = train(
        train_dir,
        name="faces_again",
        val=val_dir,
        seed=0,
        output_dir=tmp_path / "faces_again",
        cache=EmbeddingCache(cache_file),
    )
    assert again.from_cache == again.embedded == 280
    assert again.embed_seconds < trained.embed_seconds / 3
    assert again.spec.weights_sha256 == trained.spec.weights_sha256  # same seed, same model, bit for bit


def test_softmax_head_with_early_stopping(
    trained: TrainResult, faces_data: tuple[Path, Path], cache_file: Path, tmp_path: Path
) -> None:
    train_dir, val_dir = faces_data
    result = train(
        train_dir,
        name="faces_softmax",
        val=val_dir,
        head="softmax",
        output_dir=tmp_path / "m",
        cache=EmbeddingCache(cache_file),
    )
    assert result.fit.kind == "softmax"
    assert result.fit.epochs_run < 200  # stopped early...
    assert result.fit.best_epoch < result.fit.epochs_run  # ...and kept the best epoch's weights
    assert result.val_accuracy is not None and result.val_accuracy >= 0.85
