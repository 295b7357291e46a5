"""The parts of training on their own: head trainers, ONNX fusion, the embedding cache, splits, labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from skimage import data as skdata

from sparkvision import Classifier, ConfigError, ModelFormatError
from sparkvision.training import (
    EmbeddingCache,
    LabelledImages,
    LinearHead,
    check_label,
    embed_files,
    fit_head,
    fuse_head,
    labelled_images,
    split_train_val,
)


def _blobs(
    n_train: int, n_val: int, classes: int, dim: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian blobs, one per class: ``(x_train, y_train, x_val, y_val)`` from the same distribution."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 2
    # Features on very different scales, as real embeddings are: standardisation must matter.
    scale, shift = rng.uniform(0.01, 50, size=dim), rng.normal(size=dim) * 10

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(classes), n)
        return ((centres[y] + rng.normal(size=(len(y), dim))) * scale + shift).astype(np.float32), y

    return (*draw(n_train), *draw(n_val))


# -- heads -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [2, 4])
def test_logistic_head_equals_scikit_learn_on_raw_embeddings(classes: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, xv, yv = _blobs(30, 10, classes)
    fit = fit_head(x, y, classes, xv, yv, kind="logistic")
    chosen = fit.settings["C"]
    assert [h["C"] for h in fit.history] == [0.01, 0.1, 1.0]
    assert chosen == min(fit.history, key=lambda h: h["val_loss"])["C"]

    # The same model fitted independently: the folded head must give the same probabilities on raw x.
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=chosen, max_iter=1000).fit(scaler.transform(x), y)
    expected = reference.predict_proba(scaler.transform(xv))
    logits = fit.head.logits(xv).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=2e-4)
    assert fit.val_accuracy is not None and fit.val_accuracy > 0.9
    assert fit.head.weight.shape == (classes, 16) and fit.head.weight.dtype == np.float32


def test_softmax_head_is_reproducible_and_stops_early() -> None:
    x, y, xv, yv = _blobs(40, 15, 3, dim=64)
    # A quarter of the training labels are wrong: fitting them makes the validation loss turn up.
    rng = np.random.default_rng(0)
    flip = rng.random(len(y)) < 0.25
    y = y.copy()
    y[flip] = rng.integers(0, 3, flip.sum())
    first = fit_head(x, y, 3, xv, yv, kind="softmax", seed=7, epochs=300, patience=5)
    again = fit_head(x, y, 3, xv, yv, kind="softmax", seed=7, epochs=300, patience=5)
    other = fit_head(x, y, 3, xv, yv, kind="softmax", seed=8, epochs=300, patience=5)
    np.testing.assert_array_equal(first.head.weight, again.head.weight)
    assert not np.array_equal(first.head.weight, other.head.weight)
    assert first.epochs_run < 300 and first.epochs_run - first.best_epoch == 5
    best = min(first.history, key=lambda h: h["val_loss"])
    assert best["epoch"] == first.best_epoch and first.val_loss == pytest.approx(best["val_loss"], rel=1e-6)
    assert first.val_accuracy is not None and first.val_accuracy > 0.9

    no_val = fit_head(x, y, 3, kind="softmax", epochs=12)
    assert no_val.epochs_run == 12 and no_val.best_epoch == 12 and no_val.val_accuracy is None


def test_head_input_errors() -> None:
    x, y, _, _ = _blobs(5, 1, 3)
    with pytest.raises(ConfigError, match="at least two classes"):
        fit_head(x, y * 0, 1)
    with pytest.raises(ConfigError, match=r"classes \[2\] have no training images"):
        fit_head(x[y < 2], y[y < 2], 3)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        fit_head(bad, y, 3)
    with pytest.raises(ConfigError, match="unknown head"):
        fit_head(x, y, 3, kind="forest")  # type: ignore[arg-type]


# -- ONNX fusion -------------------------------------------------------------------------------------
def _tiny_base(path: Path, with_embeddings: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """pixel_values (N×3) → MatMul → Relu → embeddings (N×4) → Gemm → logits (N×2), plus a stray weight."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(3, 4)).astype(np.float32)
    fc = rng.normal(size=(2, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["pixel_values", "w1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["embeddings"]),
        helper.make_node("Gemm", ["embeddings", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])]
    if with_embeddings:
        outputs.append(helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", 4]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3])],
        outputs,
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(fc, "fc.weight"),
            numpy_helper.from_array(np.zeros(2, np.float32), "fc.bias"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return w1, fc


def test_fuse_head_replaces_the_classifier(tmp_path: Path) -> None:
    w1, _ = _tiny_base(tmp_path / "base.onnx")
    rng = np.random.default_rng(1)
    head = LinearHead(weight=rng.normal(size=(3, 4)), bias=rng.normal(size=3))
    fused = fuse_head(tmp_path / "base.onnx", head, tmp_path / "fused.onnx")

    model = onnx.load(str(fused))
    assert [o.name for o in model.graph.output] == ["logits", "embeddings"]
    assert {i.name for i in model.graph.initializer} == {"w1", "trained_head.weight", "trained_head.bias"}
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Relu", "Gemm"]

    x = rng.normal(size=(5, 3)).astype(np.float32)
    logits, embeddings = ort.InferenceSession(str(fused)).run(None, {"pixel_values": x})
    np.testing.assert_allclose(embeddings, np.maximum(x @ w1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, head.logits(embeddings), rtol=1e-5, atol=1e-5)
    assert logits.shape == (5, 3)


def test_fuse_head_needs_matching_embeddings(tmp_path: Path) -> None:
    _tiny_base(tmp_path / "no_emb.onnx", with_embeddings=False)
    head = LinearHead(weight=np.ones((2, 4)), bias=np.zeros(2))
    with pytest.raises(ModelFormatError, match="no 'embeddings' output"):
        fuse_head(tmp_path / "no_emb.onnx", head, tmp_path / "out.onnx")
    _tiny_base(tmp_path / "base.onnx")
    with pytest.raises(ModelFormatError, match="expects 5-d embeddings"):
        fuse_head(
            tmp_path / "base.onnx", LinearHead(weight=np.ones((2, 5)), bias=np.zeros(2)), tmp_path / "o.onnx"
        )


# -- the embedding cache -----------------------------------------------------------------------------
def test_cache_matches_path_mtime_and_size(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "e.sqlite") as cache:
        vector = np.arange(6, dtype=np.float32)
        cache.put("model-a", [(("/x.jpg", 10, 20), vector)])
        np.testing.assert_array_equal(cache.get("model-a", [("/x.jpg", 10, 20)])["/x.jpg"], vector)
        assert cache.get("model-a", [("/x.jpg", 11, 20)]) == {}  # edited file
        assert cache.get("model-a", [("/x.jpg", 10, 21)]) == {}
        assert cache.get("model-b", [("/x.jpg", 10, 20)]) == {}  # another model
        cache.put("model-a", [(("/x.jpg", 11, 20), vector + 1)])  # the newer version replaces the old
        assert cache.get("model-a", [("/x.jpg", 10, 20)]) == {}


def test_embed_files_reuses_the_cache_and_retries_failures(lite0: Classifier, tmp_path: Path) -> None:
    paths = []
    for name in ("chelsea", "coffee", "rocket"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).resize((160, 120)).save(path)
        paths.append(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    files = [*paths, broken]
    cache = EmbeddingCache(tmp_path / "e.sqlite")

    first = embed_files(lite0, files, cache=cache)
    assert (first.computed, first.from_cache, list(first.errors)) == (3, 0, [3])
    second = embed_files(lite0, files, cache=cache)
    assert (second.computed, second.from_cache, list(second.errors)) == (0, 3, [3])
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert first.vectors.shape == (4, 1280) and not first.vectors[3].any()

    Image.fromarray(skdata.astronaut()).resize((120, 120)).save(paths[1])  # a different picture, same name
    os.utime(paths[1], ns=(1, 1))
    third = embed_files(lite0, files, cache=cache)
    assert (third.computed, third.from_cache) == (1, 2)
    assert not np.allclose(third.vectors[1], first.vectors[1])


# -- splits and labels -------------------------------------------------------------------------------
def test_split_is_stratified_and_seeded() -> None:
    data = LabelledImages(
        classes=("a", "b", "c"),
        paths=tuple(Path(f"{i}.jpg") for i in range(23)),
        targets=tuple([0] * 10 + [1] * 10 + [2] * 3),
    )
    train, val = split_train_val(data, 0.2, seed=1)
    assert val is not None
    assert train.counts() == {"a": 8, "b": 8, "c": 2} and val.counts() == {"a": 2, "b": 2, "c": 1}
    assert set(train.paths).isdisjoint(val.paths) and len(train) + len(val) == 23
    assert split_train_val(data, 0.2, seed=1)[1] == val
    assert split_train_val(data, 0.2, seed=2)[1] != val
    assert split_train_val(data, 0, seed=1) == (data, None)
    with pytest.raises(ConfigError, match="below 1"):
        split_train_val(data, 1.0, seed=1)


def test_labels_from_pairs_and_mappings(tmp_path: Path) -> None:
    pairs = labelled_images([("b.jpg", "dog"), ("a.jpg", "cat"), ("c.jpg", "dog")])
    assert pairs.classes == ("cat", "dog") and pairs.targets == (1, 0, 1)
    mapping = labelled_images({"x/y": ["1.jpg"], "z": ["2.jpg", "3.jpg"], "empty": []})
    assert mapping.classes == ("x/y", "z") and mapping.empty_classes == ("empty",)
    assert check_label("cafe\u0301") == "café"
    for bad, message in ((" ", "empty"), ("a\nb", "control"), (3, "must be strings"), ("x" * 201, "longer")):
        with pytest.raises(ConfigError, match=message):
            check_label(bad)
    with pytest.raises(ConfigError, match="is a folder"):
        labelled_images([(str(tmp_path), "cat")])


def test_public_api_is_locked() -> None:
    import sparkvision.training as training

    assert sorted(training.__all__) == [
        "ClassMatch", "ClassMetrics", "DEFAULT_HEAD", "EmbeddingCache", "Embeddings", "Evaluation",
        "HEAD_KINDS", "HeadFit", "LabelledImages", "LinearHead", "TrainResult", "check_label",
        "discover_dataset", "embed_files", "evaluate", "fit_head", "fuse_head", "labelled_images",
        "map_classes", "model_fingerprint", "split_train_val", "train", "write_report",
    ]  # fmt: skip
    assert all(hasattr(training, name) for name in training.__all__)
