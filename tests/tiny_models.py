"""The tiny real models the tests share: ONNX graphs built in milliseconds, saved as model directories.

* :func:`write_colour_model` — answers the dominant colour (red / green / blue) of an image; for tests
  that need to know the right answer (core, CLI, web service).
* :func:`write_tiny_model` — a random convolution over the channels; any channel swap or wrong gray
  level changes every score (the Spark image-format tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sparkvision.models.spec import ModelSpec
from sparkvision.preprocess import PreprocessSpec

COLOURS = ("red", "green", "blue")
#: Two classes share a name on purpose (as ImageNet's two "crane" do).
TINY_LABELS = ("tabby", "crane", "crane", "espresso", "rocket", "tripod")


def _save(
    directory: Path, nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray], spec: ModelSpec
) -> Path:
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes, spec.name, inputs, outputs, [numpy_helper.from_array(a, n) for n, a in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"))
    spec.save(directory)
    return directory


def write_colour_model(directory: Path, name: str = "tiny_colour") -> Path:
    """A real model directory whose network answers the dominant colour of an image.

    ``logits = 10 · mean(pixel_values over H, W)``: after the model's (x − 0.5) / 0.5 normalisation a
    red image scores high on "red" and low on the others.
    """
    from onnx import TensorProto, helper

    return _save(
        directory,
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        {"w": (10.0 * np.eye(3)).astype(np.float32)},
        ModelSpec(
            name=name,
            family="test",
            preprocess=PreprocessSpec(size=32, crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
            labels=COLOURS,
            source="tests",
            license="Apache-2.0",
        ),
    )


def write_tiny_model(directory: Path, *, size: int = 32, seed: int = 0) -> Path:
    """A small colour- and layout-sensitive ONNX classifier (conv → ReLU → mean → linear).

    The random convolution mixes the three channels differently, so swapping R and B, or getting a
    gray level wrong, changes every score.
    """
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    classes = len(TINY_LABELS)
    weights = {
        "conv_w": rng.normal(0, 0.5, (8, 3, 4, 4)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fc_w": rng.normal(0, 1.0, (8, classes)).astype(np.float32),
        "fc_b": rng.normal(0, 0.1, (classes,)).astype(np.float32),
    }
    return _save(
        directory,
        [
            helper.make_node("Conv", ["pixel_values", "conv_w", "conv_b"], ["conv"], strides=[4, 4]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["embeddings"], axis=1),
            helper.make_node("Gemm", ["embeddings", "fc_w", "fc_b"], ["logits"]),
        ],
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", 8]),
        ],
        weights,
        ModelSpec(
            name="tiny_colour",
            family="tiny",
            preprocess=PreprocessSpec(size=size, resize="crop", crop_pct=0.875, interpolation="bicubic"),
            labels=TINY_LABELS,
            outputs=("logits", "embeddings"),
            source="tests",
            license="Apache-2.0",
        ),
    )
