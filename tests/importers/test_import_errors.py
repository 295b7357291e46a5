"""Bad input to the importers: precise errors, and never a half-written model in the cache."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from import_helpers import label_map, save_checkpoint  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.errors import ConfigError, ModelImportError  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.importers.common import load_state_dict  # noqa: E402
from sparkvision.models.store import load_model_dir, models_root  # noqa: E402

PRE_VIT = {"image_processor_type": "ViTImageProcessor", "do_normalize": True, "do_resize": True,
           "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2, "size": {"height": 32, "width": 32}}  # fmt: skip
TINY = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 20,
        "image_size": 32, "patch_size": 16}  # fmt: skip


def _vit_checkpoint(directory: Path, **config: object) -> Path:
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**{**TINY, **config}))
    return save_checkpoint(model, PRE_VIT, directory, logit_std=0)


def _cache_is_empty() -> bool:
    root = models_root()
    return not root.exists() or not any(root.iterdir())


def test_a_directory_that_is_not_a_checkpoint(tmp_home: Path, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"not really")
    with pytest.raises(ModelImportError, match=r"not a Hugging Face checkpoint: it has no config\.json"):
        import_model(tmp_path / "photos")
    assert _cache_is_empty()


def test_a_checkpoint_without_weights(tmp_home: Path, tmp_path: Path) -> None:
    checkpoint = _vit_checkpoint(tmp_path / "ckpt", **label_map(3))
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(ModelImportError, match=r"has no weights: expected model\.safetensors"):
        import_model(checkpoint)
    assert _cache_is_empty()


def test_an_unsupported_architecture_names_the_supported_ones(tmp_home: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "bert"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    with pytest.raises(ModelImportError) as info:
        import_model(checkpoint)
    message = str(info.value)
    assert "'BertForSequenceClassification' is not supported" in message
    for supported in ("ViTForImageClassification", "SwinForImageClassification", "CLIPModel"):
        assert supported in message
    assert _cache_is_empty()


def test_a_config_without_labels_falls_back_to_label_i_with_a_warning(tmp_home: Path, tmp_path: Path) -> None:
    checkpoint = _vit_checkpoint(tmp_path / "ckpt", num_labels=3)  # transformers writes LABEL_0..2
    with pytest.warns(UserWarning, match="has no class names; using LABEL_0 … LABEL_2"):
        path = import_model(checkpoint, "nolabels")
    assert load_model_dir(path).labels == ("LABEL_0", "LABEL_1", "LABEL_2")


def test_labels_file_overrides_and_its_count_must_match(tmp_home: Path, tmp_path: Path) -> None:
    checkpoint = _vit_checkpoint(tmp_path / "ckpt", **label_map(3))
    good = tmp_path / "labels.txt"
    good.write_text("ant\nbee\ncow\n")
    assert load_model_dir(import_model(checkpoint, "named", labels=good)).labels == ("ant", "bee", "cow")
    bad = tmp_path / "two.txt"
    bad.write_text("ant\nbee\n")
    with pytest.raises(ModelImportError, match="2 labels for a model with 3 outputs"):
        import_model(checkpoint, "mismatch", labels=bad)
    assert not (models_root() / "mismatch").exists()
    assert [p.name for p in models_root().iterdir()] == ["named"]  # no partial directory left behind


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_home: Path, tmp_path: Path) -> None:
    checkpoint = _vit_checkpoint(tmp_path / "ckpt", **label_map(3))
    (checkpoint / "model.safetensors").unlink()
    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (sentinel,))

    torch.save({"weight": torch.zeros(1), "payload": Exploit()}, checkpoint / "pytorch_model.bin")
    with pytest.raises(ModelImportError, match="not a plain weights file"):
        import_model(checkpoint)
    assert not sentinel.exists()
    assert _cache_is_empty()

    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelImportError, match="not a plain weights file"):
        load_state_dict(raw)
    assert not sentinel.exists()


def test_plain_bin_weights_are_accepted(tmp_home: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**TINY, **label_map(3)))
    checkpoint = save_checkpoint(model, PRE_VIT, tmp_path / "ckpt", logit_std=0)
    (checkpoint / "model.safetensors").unlink()
    torch.save(model.state_dict(), checkpoint / "pytorch_model.bin")
    spec = load_model_dir(import_model(checkpoint, "frombin"))
    assert spec.labels == ("class 0", "class 1", "class 2")


def test_reimport_is_idempotent_and_a_different_model_needs_force(tmp_home: Path, tmp_path: Path) -> None:
    first = _vit_checkpoint(tmp_path / "a", **label_map(3))
    path = import_model(first, "same")
    mtime = (path / "model.onnx").stat().st_mtime_ns
    assert import_model(first, "same") == path
    assert (path / "model.onnx").stat().st_mtime_ns == mtime

    torch.manual_seed(1)
    other = save_checkpoint(
        transformers.ViTForImageClassification(transformers.ViTConfig(**TINY, **label_map(4))),
        PRE_VIT,
        tmp_path / "b",
        logit_std=0,
    )
    with pytest.raises(ModelImportError, match="a different model named 'same' already exists"):
        import_model(other, "same")
    assert load_model_dir(import_model(other, "same", replace=True)).num_classes == 4


def test_candidate_labels_on_a_fixed_label_model(tmp_home: Path, tmp_path: Path) -> None:
    path = import_model(_vit_checkpoint(tmp_path / "ckpt", **label_map(3)), "fixed")
    photo = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"
    with pytest.raises(ConfigError, match="not a zero-shot model"):
        list(Classifier(path).classify(str(photo), candidate_labels=["cat", "dog"]))


def test_a_missing_source_and_an_unknown_name(tmp_home: Path) -> None:
    with pytest.raises(ModelImportError, match="does not exist"):
        import_model("./no/such/dir")
    with pytest.raises(ModelImportError, match="neither a path nor a known model name"):
        import_model("surely_not_a_model")
