"""The folder Spark NLP's captioning notebook writes (optimum's ``encoder_model.onnx``,
``decoder_model.onnx``, ``decoder_with_past_model.onnx`` and ``assets/``) imports unchanged and captions
exactly as transformers' ``generate()``.

The folder is written here from the tiny random checkpoint, the way ``optimum-cli export onnx`` lays
it out for a ViT + GPT-2 model: optimum's input and output names, GPT-2's decoder-only key/value
convention (``past_key_values.{i}.key`` → ``present.{i}.key``, self-attention only; the step graph takes
the encoder states again), then the notebook's ``mv *.json *.txt assets/``.
"""

from __future__ import annotations

import inspect
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from caption_helpers import PHOTOS  # noqa: E402
from test_caption_parity import reference  # noqa: E402

from sparkvision.importers import import_model, source_kind  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402
from sparkvision.tasks.captioning import Captioner  # noqa: E402

pytestmark = pytest.mark.slow


class _Encoder(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixel_values=pixel_values).last_hidden_state


class _Decoder(torch.nn.Module):
    """optimum's decoder graphs for a GPT-2 decoder: self-attention key/values in and out; cross-attention
    recomputed from ``encoder_hidden_states`` at every call."""

    def __init__(self, model: Any, with_past: bool) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.layers = model.config.decoder.n_layer
        self.with_past = with_past

    def forward(self, input_ids: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        *past, states = rest
        own = DynamicCache()
        for layer in range(len(past) // 2):
            own.update(past[2 * layer], past[2 * layer + 1], layer)
        length = past[0].shape[2] if past else 0
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0) + length
        cache = EncoderDecoderCache(own, DynamicCache())
        keyword = (
            "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"
        )
        out = self.decoder(
            input_ids=input_ids, encoder_hidden_states=states, position_ids=positions, use_cache=True,
            **{keyword: cache},
        )  # fmt: skip
        layers = cache.self_attention_cache.layers
        return (out.logits, *(t for i in range(self.layers) for t in (layers[i].keys, layers[i].values)))


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    axes = {name: {0: "batch"} for name in (*inputs, *outputs)}
    axes["input_ids"] = axes["logits"] = {0: "batch", 1: "sequence"}
    for name in (*inputs, *outputs):
        if name.startswith(("past_key_values.", "present.")):
            axes[name] = {0: "batch", 2: "past" if name.startswith("past") else "total"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), args, str(path), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip


def write_sparknlp_export(checkpoint: Path, folder: Path) -> Path:
    """optimum's three graphs of the checkpoint, then the notebook's move of the assets."""
    from transformers import VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint)).eval()
    layers = model.config.decoder.n_layer
    presents = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    pasts = [name.replace("present.", "past_key_values.") for name in presents]
    folder.mkdir(parents=True)
    pixels = torch.rand(2, 3, 224, 224)
    _export(
        _Encoder(model), (pixels,), folder / "encoder_model.onnx", ["pixel_values"], ["last_hidden_state"]
    )
    with torch.no_grad():
        states = _Encoder(model)(pixels)
        ids = torch.tensor([[1, 5, 7], [1, 9, 4]])
        cache = _Decoder(model, False)(ids, states)[1:]
    _export(
        _Decoder(model, False), (ids, states), folder / "decoder_model.onnx",
        ["input_ids", "encoder_hidden_states"], ["logits", *presents],
    )  # fmt: skip
    _export(
        _Decoder(model, True), (ids[:, :1], *cache, states), folder / "decoder_with_past_model.onnx",
        ["input_ids", *pasts, "encoder_hidden_states"], ["logits", *presents],
    )  # fmt: skip
    assets = folder / "assets"
    assets.mkdir()
    for file in checkpoint.iterdir():
        if file.suffix in (".json", ".txt"):
            shutil.copy(file, assets / file.name)
    return folder


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
