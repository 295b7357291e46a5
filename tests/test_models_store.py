"""Model directories, the cache and the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkvision import Classifier, ModelFormatError, ModelNotFoundError
from sparkvision.engine import forget_engines
from sparkvision.models import catalogue
from sparkvision.models.spec import ModelSpec
from sparkvision.models.store import build_model_dir, cached_model_dir, load_model_dir
from sparkvision.preprocess import PreprocessSpec


def tiny_spec(name: str = "tiny") -> ModelSpec:
    return ModelSpec(name=name, family="test", preprocess=PreprocessSpec(size=8), labels=("a", "b"))


def test_spec_round_trip(tmp_path: Path) -> None:
    spec = tiny_spec().with_changes(synsets=("n1", "n2"), activation="sigmoid", extra={"k": 1})
    spec.save(tmp_path)
    assert ModelSpec.load(tmp_path) == spec


def test_spec_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a sparkvision model"):
        ModelSpec.load(tmp_path)
    (tmp_path / "sparkvision.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="cannot be read"):
        ModelSpec.load(tmp_path)
    data = tiny_spec().to_dict()
    (tmp_path / "sparkvision.json").write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="version 99 is not supported"):
        ModelSpec.load(tmp_path)
    del data["preprocess"]
    (tmp_path / "sparkvision.json").write_text(json.dumps(data))
    with pytest.raises(ModelFormatError, match="preprocess"):
        ModelSpec.load(tmp_path)


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "models" / "broken"

    def build(directory: Path) -> ModelSpec:
        (directory / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_model_dir(target, build)
    assert not target.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_build_without_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="missing or empty"):
        build_model_dir(tmp_path / "m", lambda d: tiny_spec())
    assert not (tmp_path / "m").exists()


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelNotFoundError, match=r"Did you mean .*'efficientnet_lite0'"):
        catalogue.resolve_model("efficientnet_lite")
    with pytest.raises(ModelNotFoundError, match="models list"):
        catalogue.resolve_model("no-such-thing-at-all")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        catalogue.resolve_model("./no/such/dir")


def test_aliases_resolve_to_the_same_model(lite0: Classifier) -> None:
    path, spec = catalogue.resolve_model("efficientnet-lite0")
    assert path == lite0.model_dir and spec.name == "efficientnet_lite0"


def test_corrupt_cached_model_is_rebuilt(lite0: Classifier, examples_dir: Path) -> None:
    target = cached_model_dir("efficientnet_lite0")
    (target / "sparkvision.json").write_text("{")
    path, spec = catalogue.resolve_model("efficientnet_lite0")
    assert path == target and spec.name == "efficientnet_lite0"
    # a truncated ONNX file: ORT refuses it with a message that says how to recover
    onnx_file = target / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])
    forget_engines()
    with pytest.raises(ModelFormatError, match=r"delete .* and build or import the model again"):
        list(Classifier(target).classify(examples_dir / "coffee.jpg"))
    # through the catalogue name it is rebuilt on the spot, and the images still get classified
    (p,) = Classifier.pretrained("efficientnet_lite0").classify(examples_dir / "coffee.jpg")
    assert p.label == "espresso"
    assert load_model_dir(target).name == "efficientnet_lite0"


def test_list_models_shows_catalogue_and_cache(lite0: Classifier) -> None:
    rows = {r.name: r for r in catalogue.list_models()}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(rows)
    assert rows["efficientnet_lite0"].cached and rows["efficientnet_lite0"].input_size == 224
    assert rows["efficientnet_lite2"].input_size == 260 and rows["efficientnet_lite2"].license == "Apache-2.0"


def test_invalid_model_names_are_refused() -> None:
    with pytest.raises(ModelNotFoundError):
        catalogue.resolve_model("bad name with spaces")


def test_catalogue_geometry_matches_the_converter() -> None:
    """The catalogue's data states each model's input size (so listing models doesn't import onnx):
    keep it in step with the converter, which builds the model at that size."""
    from sparkvision.models import efficientnet_lite

    for variant, info in efficientnet_lite.VARIANTS.items():
        entry = catalogue.get_entry(f"efficientnet_lite{variant}")
        assert entry is not None and entry.input_size == info.image_size
        assert entry.builder_args == {"variant": variant}
