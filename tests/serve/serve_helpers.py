"""Helpers for the web-service tests: a tiny real colour model and in-memory test images."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ("red", "green", "blue")


def write_colour_model(directory: Path, name: str = "tiny_colour") -> Path:
    """A real model directory whose network answers the dominant colour of an image.

    ``logits = 10 · mean(pixel_values over H, W)``: after the model's (x − 0.5) / 0.5 normalisation a
    red image scores high on "red" and low on the others. Small enough to build in milliseconds.
    """
    import onnx
    from onnx import TensorProto, helper

    from sparkvision.models.spec import ModelSpec
    from sparkvision.preprocess import PreprocessSpec

    directory.mkdir(parents=True, exist_ok=True)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], (10.0 * np.eye(3)).flatten().tolist())
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "colour",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, directory / "model.onnx")
    ModelSpec(
        name=name,
        family="test",
        preprocess=PreprocessSpec(size=32, crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        labels=COLOURS,
        source="tests",
        license="Apache-2.0",
    ).save(directory)
    return directory


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def wait_ready(client, timeout: float = 60.0) -> None:
    """Poll /healthz until the default model is loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/healthz")
        if response.status_code == 200:
            return
        assert response.json()["status"] == "loading", response.json()
        time.sleep(0.02)
    raise AssertionError("the model did not load in time")
