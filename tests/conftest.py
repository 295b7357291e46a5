"""Shared fixtures. Every test session gets its own model cache, so tests never depend on (or
pollute) the user's ``~/.cache/sparkvision``; set ``SPARKVISION_TEST_HOME`` to reuse one between runs."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"


def pytest_configure(config: pytest.Config) -> None:
    home = os.environ.get("SPARKVISION_TEST_HOME") or tempfile.mkdtemp(prefix="sparkvision-test-home-")
    os.environ["SPARKVISION_HOME"] = home


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def lite0():
    """The real default model (converted into the test cache on first use)."""
    from sparkvision import Classifier

    return Classifier.pretrained("efficientnet_lite0")


@pytest.fixture(scope="session")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real 3-class model (red / green / blue) whose right answers are known."""
    from tiny_models import write_colour_model

    return write_colour_model(tmp_path_factory.mktemp("models") / "tiny_colour")


@pytest.fixture(scope="session")
def caption_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ViT + GPT-2 ``VisionEncoderDecoderModel`` checkpoint (Hugging Face layout), built
    once per session for the captioning and Spark tests (see tests/captioning/caption_helpers.py)."""
    pytest.importorskip("transformers")
    sys.path.insert(0, str(ROOT / "tests" / "captioning"))
    from caption_helpers import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("caption") / "checkpoint")
