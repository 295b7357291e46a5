"""The ONNX writer the built-in converter uses (so a plain install needs no ``onnx`` package) writes
exactly the bytes the ``onnx`` package's own builders write, and ONNX Runtime runs what it writes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from sparkvision.models import onnx_proto

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@pytest.mark.parametrize(
    "value",
    [np.array(6.0, dtype=np.float32), np.arange(24, dtype=np.float64).reshape(2, 3, 4), np.zeros((0, 3))],
)
def test_tensor_bytes_match_onnx(value: np.ndarray) -> None:
    expected = numpy_helper.from_array(value.astype(np.float32), "w")
    assert onnx_proto.tensor("w", value) == expected.SerializeToString()


def test_node_bytes_match_onnx_for_every_attribute_kind() -> None:
    attributes = {"strides": [2, 2], "pads": [0, -1, 1, 1], "axis": 1, "alpha": 0.25, "mode": "same"}
    expected = helper.make_node("Conv", ["x", "w", ""], ["y"], name="conv 1", **attributes)
    assert onnx_proto.node("Conv", ["x", "w", ""], ["y"], name="conv 1", **attributes) == (
        expected.SerializeToString()
    )
    with pytest.raises(TypeError, match="bool"):
        onnx_proto.node("Flatten", ["x"], ["y"], name="f", axis=True)


def test_value_info_and_model_bytes_match_onnx() -> None:
    shape: list[int | str] = ["batch", 3, 1, 1]
    assert onnx_proto.value_info("x", onnx_proto.FLOAT, shape) == (
        helper.make_tensor_value_info("x", TensorProto.FLOAT, shape).SerializeToString()
    )
    weight = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    ours = onnx_proto.model(
        graph_name="g",
        nodes=[
            onnx_proto.node("Flatten", ["x"], ["flat"], name="flatten", axis=1),
            onnx_proto.node("Gemm", ["flat", "w"], ["y"], name="gemm", transB=1),
        ],
        initializers=[onnx_proto.tensor("w", weight)],
        inputs=[onnx_proto.value_info("x", onnx_proto.FLOAT, shape)],
        outputs=[onnx_proto.value_info("y", onnx_proto.FLOAT, ["batch", 1])],
        opset=17,
        ir_version=8,
        producer_name="sparkvision",
        doc_string="tiny",
    )
    expected = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Flatten", ["x"], ["flat"], name="flatten", axis=1),
                helper.make_node("Gemm", ["flat", "w"], ["y"], name="gemm", transB=1),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
            initializer=[numpy_helper.from_array(weight, "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=8,
        producer_name="sparkvision",
        doc_string="tiny",
    )
    assert ours == expected.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(ours), full_check=True)
    session = ort.InferenceSession(ours, providers=["CPUExecutionProvider"])
    x = np.array([[[[2.0]], [[1.0]], [[4.0]]], [[[0.0]], [[0.0]], [[0.0]]]], dtype=np.float32)
    np.testing.assert_allclose(session.run(["y"], {"x": x})[0], [[2.0], [0.0]])
