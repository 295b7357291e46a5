"""The imported encoder runs its self-attention as ONNX Runtime's fused ``Attention`` operator, and still
computes transformers' encoder states; a block of another shape is left alone."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from caption_helpers import PHOTOS  # noqa: E402
from PIL import Image  # noqa: E402

from sparkvision.importers.caption_fusion import fuse_attention  # noqa: E402

pytestmark = pytest.mark.slow


def op_types(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node]


def test_the_encoder_attention_is_fused_and_gives_transformers_states(
    caption_model: Path, hf_captioner: Any
) -> None:
    import onnxruntime as ort

    model, processor, _ = hf_captioner
    layers = model.config.encoder.num_hidden_layers
    ops = op_types(caption_model / "model.onnx")
    assert ops.count("Attention") == layers and "Softmax" not in ops
    pixels = processor(images=[Image.open(p).convert("RGB") for p in PHOTOS], return_tensors="pt")[
        "pixel_values"
    ]
    with torch.no_grad():
        want = model.encoder(pixel_values=pixels).last_hidden_state.numpy()
    session = ort.InferenceSession(str(caption_model / "model.onnx"), providers=["CPUExecutionProvider"])
    (have,) = session.run(["encoder_hidden_states"], {"pixel_values": pixels.numpy()})
    assert have.shape == want.shape
    assert np.abs(have - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def test_a_graph_without_the_pattern_is_left_unchanged(caption_model: Path, tmp_path: Path) -> None:
    # The decoder's attention (causal mask, cached keys) is not the encoder's form: nothing is fused.
    path = tmp_path / "decoder.onnx"
    shutil.copy(caption_model / "decoder_model.onnx", path)
    before = path.read_bytes()
    assert fuse_attention(path, 4) == 0
    assert path.read_bytes() == before
    # Fusing an already fused encoder finds nothing more.
    encoder = tmp_path / "model.onnx"
    shutil.copy(caption_model / "model.onnx", encoder)
    assert fuse_attention(encoder, 4) == 0
