"""Writes the folder Spark NLP's captioning notebook produces (``optimum-cli export onnx`` of a
``VisionEncoderDecoderModel``, then ``mv *.json *.txt assets/``) from a tiny checkpoint, with torch.

optimum's names and conventions for a ViT + GPT-2 model: ``encoder_model.onnx`` (``pixel_values`` →
``last_hidden_state``), ``decoder_model.onnx`` (``input_ids``, ``encoder_hidden_states`` → ``logits``,
``present.{i}.key`` / ``.value``) and ``decoder_with_past_model.onnx`` (the same plus
``past_key_values.{i}.key`` / ``.value``): GPT-2's decoder-only key/value convention, self-attention
only, cross-attention recomputed from the encoder states at every call.
"""

from __future__ import annotations

import inspect
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch


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
