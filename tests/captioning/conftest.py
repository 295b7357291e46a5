"""One tiny captioning checkpoint per test session (``caption_checkpoint``, in tests/conftest.py: the
Spark tests use it too), imported once (keeps the folder fast)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def caption_import(caption_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The checkpoint imported with one command, ``sparkvision import DIR``: the model and the output."""
    from click.testing import CliRunner

    from sparkvision.cli import cli

    target = tmp_path_factory.mktemp("m") / "model"
    result = CliRunner().invoke(
        cli, ["import", str(caption_checkpoint), "-n", "tiny_captioner", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    return target, result.output


@pytest.fixture(scope="session")
def caption_model(caption_import: tuple[Path, str]) -> Path:
    return caption_import[0]


@pytest.fixture(scope="session")
def hf_captioner(caption_checkpoint: Path) -> Any:
    """transformers' model and image processor for the checkpoint (the reference)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    model = transformers.VisionEncoderDecoderModel.from_pretrained(str(caption_checkpoint)).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(str(caption_checkpoint), backend="pil")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(caption_checkpoint))
    return model, processor, tokenizer
