"""Captions of a tiny random ViT + GPT-2 captioner, imported and run without torch, against transformers'
``generate()`` on real photos: the same token ids, the same text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from caption_helpers import PHOTOS  # noqa: E402
from PIL import Image  # noqa: E402

from sparkvision.errors import ConfigError  # noqa: E402
from sparkvision.importers import source_kind  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402
from sparkvision.tasks.captioning import Caption, Captioner  # noqa: E402

pytestmark = pytest.mark.slow


def reference(hf: Any, photos: list[Path], **options: Any) -> list[list[tuple[int, ...]]]:
    """transformers' token ids per photo, best first: the start token removed, and what follows the end
    token (padding; beam search pads with the end token when the padding id is 0) cut off."""
    model, processor, _ = hf
    pixels = processor(images=[Image.open(p).convert("RGB") for p in photos], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        rows = model.generate(pixel_values=pixels, **options).tolist()
    pad, eos = model.generation_config.pad_token_id, model.generation_config.eos_token_id
    copies = options.get("num_return_sequences", 1)
    stripped = []
    for row in rows:
        tokens = row[1:]
        if eos in tokens:
            tokens = tokens[: tokens.index(eos) + 1]
        while tokens and tokens[-1] == pad:
            tokens.pop()
        stripped.append(tuple(tokens))
    return [stripped[i : i + copies] for i in range(0, len(stripped), copies)]


def test_import_writes_a_captioning_model(
    caption_checkpoint: Path, caption_import: tuple[Path, str], hf_captioner: Any
) -> None:
    caption_model, output = caption_import
    assert source_kind(caption_checkpoint) == "vision-encoder-decoder"
    assert "imported tiny_captioner" in output and "vit-gpt2, captioning (text generation)" in output
    spec = load_model_dir(caption_model)
    _, _, tokenizer = hf_captioner
    assert spec.task == "captioning" and spec.family == "vit-gpt2" and spec.labels == ()
    assert spec.preprocess.size == 224 and spec.preprocess.mean == (0.5, 0.5, 0.5)
    generation = spec.extra["generation"]
    assert generation["decoder_start_token_id"] == tokenizer.bos_token_id
    assert generation["eos_token_id"] == [tokenizer.eos_token_id]
    assert generation["pad_token_id"] == tokenizer.pad_token_id
    assert generation["max_length"] == 16  # from generation_config.json
    for name in ("model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx", "tokenizer.json"):
        assert (caption_model / name).is_file()
    # GPT-2's step graph takes cross-attention key/values once per image, shared by its beams (the
    # beam-search parity cases below run through that path).
    assert spec.extra["cross_shared_by_beams"] is True


OPTIONS = {
    "greedy": {},
    "beam2": {"num_beams": 2},
    "beam3x3": {"num_beams": 3, "num_return_sequences": 3},
    "beam3-short": {"num_beams": 3, "length_penalty": -1.0, "early_stopping": True},
    "beam3-never": {"num_beams": 3, "early_stopping": "never", "max_new_tokens": 10},
    "penalties": {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "min_length": 6},
    "beam2-penalties": {
        "num_beams": 2,
        "max_new_tokens": 12,
        "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.2,
    },
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_token_ids_and_text_equal_transformers_generate(
    caption_model: Path, hf_captioner: Any, options: dict[str, Any]
) -> None:
    expected = reference(hf_captioner, PHOTOS, **options)
    results = list(Captioner(caption_model).caption(PHOTOS, batch_size=3, **options))
    assert [r.path for r in results] == [str(p) for p in PHOTOS]
    assert [list(r.tokens) for r in results] == expected
    _, _, tokenizer = hf_captioner
    for result, tokens in zip(results, expected):
        assert list(result.captions) == tokenizer.batch_decode(tokens, skip_special_tokens=True)
        assert result.width and result.height and result.error is None


def test_the_reference_is_not_degenerate(hf_captioner: Any) -> None:
    """The comparison above means something: captions differ between photos, some end early with the end
    token, and beam search finds other sequences than greedy search."""
    greedy = [group[0] for group in reference(hf_captioner, PHOTOS)]
    beams = [group[0] for group in reference(hf_captioner, PHOTOS, num_beams=3)]
    eos = hf_captioner[0].generation_config.eos_token_id
    assert len(set(greedy)) >= 3
    assert any(tokens[-1] == eos and len(tokens) < 15 for tokens in greedy)
    assert greedy != beams
    short = [group[0] for group in reference(hf_captioner, PHOTOS, **OPTIONS["beam3-short"])]
    assert any(tokens[-1] == eos for tokens in short)


@pytest.mark.parametrize(
    "options", [{}, {"num_beams": 3, "num_return_sequences": 2}], ids=["greedy", "beam3"]
)
def test_cache_and_no_cache_give_the_same_tokens(caption_model: Path, options: dict[str, Any]) -> None:
    captioner = Captioner(caption_model)
    cached = [r.tokens for r in captioner.caption(PHOTOS, **options)]
    recomputed = [r.tokens for r in captioner.caption(PHOTOS, use_cache=False, **options)]
    assert cached == recomputed


def test_seeded_sampling_is_reproducible_whatever_the_batch(caption_model: Path) -> None:
    captioner = Captioner(caption_model)
    options = {"do_sample": True, "top_k": 30, "top_p": 0.95, "temperature": 1.5, "num_return_sequences": 2}
    first = [r.captions for r in captioner.caption(PHOTOS, seed=7, batch_size=5, **options)]
    again = [r.captions for r in captioner.caption(PHOTOS, seed=7, batch_size=2, **options)]
    other = [r.captions for r in captioner.caption(PHOTOS, seed=8, batch_size=5, **options)]
    greedy = [r.captions[0] for r in captioner.caption(PHOTOS)]
    assert first == again
    assert first != other
    assert all(len(c) == 2 for c in first)
    assert [c[0] for c in first] != greedy


def test_an_unreadable_image_is_an_error_row(caption_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Path(PHOTOS[0]).read_bytes()[:300])
    results = list(
        Captioner(caption_model).caption([PHOTOS[0], broken, None, np.zeros((40, 60, 3), np.uint8)])
    )
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert results[0].ok and results[0].caption
    assert not results[1].ok and results[1].captions == () and results[1].tokens == ()
    assert results[1].error and results[1].width is None
    assert results[2].error == "no image data (null input)"
    assert results[3].ok and results[3].path is None
    assert results[1].to_dict() == {"path": str(broken), "captions": [], "error": results[1].error}
    assert isinstance(results[0], Caption) and set(results[0].to_dict()) == {"path", "captions", "error"}


def test_invalid_generation_options_are_refused(caption_model: Path) -> None:
    captioner = Captioner(caption_model)
    with pytest.raises(ConfigError, match="num_return_sequences"):
        list(captioner.caption(PHOTOS[:1], num_beams=2, num_return_sequences=3))
    with pytest.raises(ConfigError, match="sampling"):
        list(captioner.caption(PHOTOS[:1], num_return_sequences=2))
    with pytest.raises(ConfigError, match="unknown generation option"):
        list(captioner.caption(PHOTOS[:1], beam_size=2))


def test_captioning_runs_without_torch(caption_model: Path, hf_captioner: Any) -> None:
    """Run time needs ONNX Runtime, NumPy and tokenizers only: torch and transformers are blocked here."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from sparkvision.tasks.captioning import Captioner\n"
        f"c = Captioner({str(caption_model)!r}).caption_one({str(PHOTOS[0])!r}, num_beams=2)\n"
        "assert c.ok, c\n"
        "print(list(c.tokens[0]))\n"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(list(reference(hf_captioner, PHOTOS[:1], num_beams=2)[0][0]))


@pytest.mark.parametrize(
    "args, options", [([], {}), (["--beams", "3", "-n", "2"], {"num_beams": 3, "num_return_sequences": 2})]
)
def test_cli_writes_the_text_of_transformers_generate(
    caption_model: Path, hf_captioner: Any, tmp_path: Path, args: list[str], options: dict[str, Any]
) -> None:
    from click.testing import CliRunner

    from sparkvision.cli import cli

    out = tmp_path / "captions.jsonl"
    folder = PHOTOS[0].parent
    result = CliRunner().invoke(
        cli, ["caption", str(folder), "-m", str(caption_model), "-f", "jsonl", "-o", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    _, _, tokenizer = hf_captioner
    expected = [
        tokenizer.batch_decode(group, skip_special_tokens=True)
        for group in reference(hf_captioner, PHOTOS, **options)
    ]
    assert [Path(r["path"]).name for r in records] == [p.name for p in PHOTOS]
    assert [r["captions"] for r in records] == expected
    assert all(r["error"] is None for r in records)


def test_cli_refuses_bad_generation_options(caption_model: Path) -> None:
    from click.testing import CliRunner

    from sparkvision.cli import cli

    result = CliRunner().invoke(cli, ["caption", str(PHOTOS[0]), "-m", str(caption_model), "-n", "2"])
    assert result.exit_code == 2 and "beam search" in result.output


def test_spark_nlp_default_name_is_in_the_catalogue_with_a_clear_offline_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sparkvision.errors import ModelNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelNotFoundError, match="sparkvision import hf:nlpconnect/vit-gpt2-image-captioning"
    ):
        Captioner.pretrained()


def test_service_captions_uploads_like_the_core(caption_model: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from sparkvision.serve import create_app

    photos = [PHOTOS[0], PHOTOS[2]]
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    files.insert(1, ("file", ("broken.jpg", b"not an image", "image/jpeg")))
    expected = [r.captions for r in Captioner(caption_model).caption(photos, num_beams=2)]
    with TestClient(create_app(str(caption_model))) as client:
        for _ in range(600):  # the model loads in the background
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        body = client.post("/v1/caption?num_beams=2", files=files).json()
        refused = client.post("/v1/caption?num_beams=2&num_return_sequences=3", files=files[:1])
    assert body["task"] == "captioning" and len(body["results"]) == 3
    assert [r["path"] for r in body["results"]] == [photos[0].name, "broken.jpg", photos[1].name]
    assert [body["results"][0]["captions"], body["results"][2]["captions"]] == [list(c) for c in expected]
    assert body["results"][1]["captions"] == [] and body["results"][1]["error"]
    assert refused.status_code == 422 and "num_return_sequences" in refused.text
