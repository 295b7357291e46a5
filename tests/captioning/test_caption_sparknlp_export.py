"""The folder Spark NLP's captioning notebook writes (optimum's ``encoder_model.onnx``,
``decoder_model.onnx``, ``decoder_with_past_model.onnx`` and ``assets/``) imports unchanged and captions
exactly as transformers' ``generate()``.

The folder is written here from the tiny random checkpoint, the way ``optimum-cli export onnx`` lays
it out for a ViT + GPT-2 model: optimum's input and output names, GPT-2's decoder-only key/value
convention (``past_key_values.{i}.key`` → ``present.{i}.key``, self-attention only; the step graph takes
the encoder states again), then the notebook's ``mv *.json *.txt assets/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from caption_helpers import PHOTOS  # noqa: E402
from sparknlp_export_helpers import write_sparknlp_export  # noqa: E402
from test_caption_parity import reference  # noqa: E402

from sparkvision.importers import import_model, source_kind  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402
from sparkvision.tasks.captioning import Captioner  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sparknlp_caption_export(caption_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sparknlp_export(caption_checkpoint, tmp_path_factory.mktemp("snlp") / "export")


@pytest.fixture(scope="module")
def imported(sparknlp_caption_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_model(
        sparknlp_caption_export, "snlp_captioner", output_dir=tmp_path_factory.mktemp("m") / "m"
    )


def test_the_folder_is_recognised_and_imported_as_a_captioning_model(
    sparknlp_caption_export: Path, imported: Path, hf_captioner: Any
) -> None:
    assert source_kind(sparknlp_caption_export) == "sparknlp-caption-export"
    spec = load_model_dir(imported)
    tokenizer = hf_captioner[2]
    assert spec.task == "captioning" and spec.family == "vit-gpt2"
    assert spec.extra["cache_layout"] == "self"
    assert spec.extra["generation"]["decoder_start_token_id"] == tokenizer.bos_token_id
    assert spec.extra["generation"]["max_length"] == 16  # assets/generation_config.json
    assert spec.preprocess.size == 224 and spec.preprocess.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "options", [{}, {"num_beams": 3, "num_return_sequences": 2}], ids=["greedy", "beam3"]
)
def test_captions_equal_transformers_generate(imported: Path, hf_captioner: Any, options: dict) -> None:
    expected = reference(hf_captioner, PHOTOS, **options)
    captioner = Captioner(imported)
    results = list(captioner.caption(PHOTOS, batch_size=3, **options))
    assert [list(r.tokens) for r in results] == expected
    tokenizer = hf_captioner[2]
    assert [list(r.captions) for r in results] == [
        tokenizer.batch_decode(tokens, skip_special_tokens=True) for tokens in expected
    ]
    recomputed = [r.tokens for r in captioner.caption(PHOTOS, use_cache=False, **options)]
    assert recomputed == [r.tokens for r in results]


def test_without_the_step_graph_every_step_recomputes_and_agrees(
    sparknlp_caption_export: Path, hf_captioner: Any, tmp_path: Path
) -> None:
    """Spark NLP itself needs only encoder_model.onnx and decoder_model.onnx."""
    folder = tmp_path / "export"
    shutil.copytree(sparknlp_caption_export, folder)
    (folder / "decoder_with_past_model.onnx").unlink()
    model_dir = import_model(folder, "snlp_no_past", output_dir=tmp_path / "m")
    assert load_model_dir(model_dir).extra["decoder_with_past_model"] is None
    results = list(Captioner(model_dir).caption(PHOTOS[:3], num_beams=2))
    assert [list(r.tokens) for r in results] == reference(hf_captioner, PHOTOS[:3], num_beams=2)
