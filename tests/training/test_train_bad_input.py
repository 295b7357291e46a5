"""``train`` on bad input: clear messages, and never a half-written model in the cache."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data as skdata

from sparkvision import Classifier, ConfigError, InputNotFoundError
from sparkvision.cli import cli
from sparkvision.models.store import models_root
from sparkvision.training import EmbeddingCache, discover_dataset, train
from sparkvision.training import trainer as train_module

_LFW = np.round(np.asarray(skdata.lfw_subset()) * 255).astype(np.uint8)


def _write(folder: Path, first: int, count: int) -> list[Path]:
    """``count`` real 25×25 photos (LFW faces from 0, non-faces from 100) as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(first, first + count):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(_LFW[i]).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingCache:
    return EmbeddingCache(tmp_path_factory.mktemp("emb") / "embeddings.sqlite")


@pytest.fixture
def two_classes(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _write(root / "face", 0, 4)
    _write(root / "background", 100, 4)
    return root


def _leftovers(name: str) -> list[str]:
    root = models_root()
    return sorted(p.name for p in root.iterdir() if name in p.name) if root.exists() else []


def test_one_class_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "only" / "face", 0, 3)
    with pytest.raises(ConfigError, match=r"only one class, 'face'.*at least two classes"):
        train(tmp_path / "only", name="one_class")
    out = CliRunner().invoke(cli, ["train", str(tmp_path / "only"), "--name", "one_class"])
    assert out.exit_code == 2 and "at least two classes" in out.stderr
    assert _leftovers("one_class") == []


def test_empty_class_folder_is_refused(two_classes: Path) -> None:
    (two_classes / "texture").mkdir()
    (two_classes / "texture" / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=r"'texture' hold no image files \(1 non-image file\(s\) skipped\)"):
        train(two_classes, name="empty_class")
    assert _leftovers("empty_class") == []


def test_no_class_folders_explains_the_layout(tmp_path: Path) -> None:
    _write(tmp_path / "flat", 0, 2)
    with pytest.raises(InputNotFoundError, match=r"2 image file.*directly in it"):
        train(tmp_path / "flat", name="flat")
    with pytest.raises(InputNotFoundError, match="no such folder"):
        train(tmp_path / "missing", name="missing")


def test_non_image_and_unreadable_files_are_skipped_and_listed(
    two_classes: Path, tmp_path: Path, cache: EmbeddingCache
) -> None:
    (two_classes / "face" / "notes.txt").write_text("not an image")
    (two_classes / "face" / "desktop.ini").write_text("[.ShellClassInfo]")
    (two_classes / "background" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (two_classes / "face" / "nested").mkdir()
    _write(two_classes / "face" / "nested", 4, 1)  # images in subfolders of a class belong to it

    result = train(two_classes, name="skips", val_split=0.25, output_dir=tmp_path / "skips", cache=cache)
    assert [Path(p).name for p, _ in result.failed] == ["broken.jpg"]
    assert "truncated" in result.failed[0][1]
    summary = result.spec.extra["training"]["data"]
    assert summary["skipped_non_image_files"] == 2
    assert summary["classes"] == {"background": 5, "face": 5}  # broken.jpg has an image extension
    assert sum(result.train_counts.values()) + sum(result.val_counts.values()) == 9


def test_validation_classes_must_match(two_classes: Path, tmp_path: Path) -> None:
    val = tmp_path / "val"
    _write(val / "face", 10, 2)
    _write(val / "zebra", 110, 2)
    with pytest.raises(ConfigError) as info:
        train(two_classes, name="val_mismatch", val=val)
    message = str(info.value)
    assert "only in the validation data: 'zebra'" in message
    assert "missing from the validation data: 'background'" in message
    assert _leftovers("val_mismatch") == []


def test_a_class_too_small_to_split(tmp_path: Path) -> None:
    _write(tmp_path / "d" / "face", 0, 3)
    _write(tmp_path / "d" / "background", 100, 1)
    with pytest.raises(ConfigError, match=r"'background' \(1\) have fewer than 2 images.*--val-split 0"):
        train(tmp_path / "d", name="too_small")


def test_labels_with_slashes_and_unicode(tmp_path: Path, cache: EmbeddingCache) -> None:
    faces = _write(tmp_path / "faces", 0, 4)
    others = _write(tmp_path / "others", 100, 4)
    labels = {"café/bar — ok": faces, "日本語 ラベル": others}
    result = train(labels, name="unicode_labels", val_split=0.25, cache=cache)
    assert set(result.classes) == set(labels)
    model = Classifier.pretrained("unicode_labels")
    assert set(model.spec.labels) == set(labels)
    spec_text = (result.model_dir / "sparkvision.json").read_text(encoding="utf-8")
    assert "café/bar — ok" in spec_text and "日本語 ラベル" in spec_text
    predictions = list(model.classify(faces + others, top_k=2))
    assert {p.labels[0] for p in predictions} <= set(labels)
    out = CliRunner().invoke(cli, ["classify", str(faces[0]), "--model", "unicode_labels", "-k", "2"])
    assert out.exit_code == 0 and ("café/bar — ok" in out.stdout or "日本語 ラベル" in out.stdout)

    # A folder name stored decomposed (as macOS does) is the same label as the composed one.
    root = tmp_path / "folders"
    shutil.copytree(tmp_path / "faces", root / unicodedata.normalize("NFD", "café"))
    shutil.copytree(tmp_path / "others", root / "thé")
    assert discover_dataset(root).classes == ("café", "thé")


def test_bad_and_taken_model_names(two_classes: Path, cache: EmbeddingCache) -> None:
    for bad in ("my/model", "../escape", "", "with space"):
        with pytest.raises(ConfigError, match="invalid model name"):
            train(two_classes, name=bad)
    with pytest.raises(ConfigError, match="built-in model"):
        train(two_classes, name="efficientnet_lite0")

    first = train(two_classes, name="taken", val_split=0.25, cache=cache)
    with pytest.raises(ConfigError, match=r"already exists.*--force"):
        train(two_classes, name="taken", cache=cache)
    out = CliRunner().invoke(cli, ["train", str(two_classes), "--name", "taken", "--no-progress"])
    assert out.exit_code == 2 and "already exists" in out.stderr
    second = train(two_classes, name="taken", val_split=0.5, seed=3, force=True, cache=cache)
    assert second.spec.extra["training"]["seed"] == 3
    assert Classifier.pretrained("taken").spec.extra["training"]["seed"] == 3
    assert first.model_dir == second.model_dir
    assert _leftovers("taken") == ["taken"]


def test_a_failed_export_leaves_nothing_behind(
    two_classes: Path, cache: EmbeddingCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fuse(base_model: Path, head: object, out_file: Path) -> Path:
        Path(out_file).write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(train_module, "fuse_head", broken_fuse)
    with pytest.raises(OSError, match="disk full"):
        train(two_classes, name="half_written", val_split=0.25, cache=cache)
    assert _leftovers("half_written") == []

    # Replacing an existing model with --force: a failure keeps the old model intact.
    monkeypatch.undo()
    train(two_classes, name="kept", val_split=0.25, cache=cache)
    before = (models_root() / "kept" / "model.onnx").read_bytes()
    monkeypatch.setattr(train_module, "fuse_head", broken_fuse)
    with pytest.raises(OSError, match="disk full"):
        train(two_classes, name="kept", val_split=0.25, force=True, cache=cache)
    assert (models_root() / "kept" / "model.onnx").read_bytes() == before
    assert _leftovers("kept") == ["kept"]


def test_cli_train_json_without_validation(two_classes: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli,
        [
            "train",
            str(two_classes),
            "--name",
            "cli_model",
            "--val-split",
            "0",
            "-o",
            str(tmp_path / "m"),
            "--format",
            "json",
            "--no-progress",
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["validation"] == "none" and summary["val_accuracy"] is None
    assert summary["train_counts"] == {"background": 4, "face": 4}
    assert summary["head"]["settings"]["C"] == 1.0
    assert Classifier(tmp_path / "m").spec.labels == ("background", "face")
    assert _leftovers("cli_model") == []  # -o writes there, not into the cache

    text = CliRunner().invoke(
        cli, ["train", str(two_classes), "--name", "cli_text", "--val-split", "0.25", "--no-progress"]
    )
    assert text.exit_code == 0, text.output
    assert "validation (split 0.25, 2 images): accuracy" in text.stdout
    assert "use it: sparkvision classify PHOTOS --model cli_text" in text.stdout


def test_force_never_replaces_a_folder_that_is_not_a_model(two_classes: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(ConfigError, match="not a sparkvision model directory"):
        train(two_classes, name="x", output_dir=precious, force=True)
    assert (precious / "thesis.txt").read_text() == "do not delete"
