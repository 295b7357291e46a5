"""Write ONNX model files without the ``onnx`` package: the few messages a converted graph needs.

The built-in EfficientNet-Lite converter runs on a plain install, on first use of a model. The ``onnx``
package (~28 MB with its dependencies) is needed there only to *write* a file that ONNX Runtime then
reads, so this module encodes the messages itself: an ONNX model is a Protocol Buffers message
(``onnx.proto``, proto2), and the subset written here is small. Each function returns one encoded
message as ``bytes``; messages nest by embedding those bytes as length-delimited fields.

Field numbers follow ``onnx.proto`` (IR version 8); the tests check the output against the ``onnx``
package's own builders and checker. Only what the converters need is covered: float32 tensors stored
as ``raw_data``, nodes with int / float / string / int-list attributes, tensor value infos with fixed or
named dimensions, and one default-domain opset import.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["FLOAT", "model", "node", "tensor", "value_info"]

#: ``TensorProto.DataType.FLOAT``
FLOAT = 1

# Protocol Buffers wire types.
_VARINT, _FIXED32, _BYTES = 0, 5, 2
# AttributeProto.AttributeType values.
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 fields: negative numbers are sent as their 64-bit two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _int(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _key(field, _BYTES) + _varint(len(value)) + value


def _str(field: int, value: str) -> bytes:
    return _bytes(field, value.encode("utf-8"))


def _messages(field: int, messages: Iterable[bytes]) -> bytes:
    return b"".join(_bytes(field, m) for m in messages)


def tensor(name: str, value: np.ndarray) -> bytes:
    """A ``TensorProto`` named ``name`` holding ``value`` as float32 (little-endian ``raw_data``)."""
    array = np.asarray(value, dtype="<f4")  # tobytes() writes C order; a 0-d array stays 0-d
    return (
        b"".join(_int(1, d) for d in array.shape)  # dims
        + _int(2, FLOAT)  # data_type
        + _str(8, name)  # name
        + _bytes(9, array.tobytes())  # raw_data
    )


def _attribute(name: str, value: int | float | str | Sequence[int]) -> bytes:
    encoded = _str(1, name)
    if isinstance(value, bool):
        raise TypeError(f"attribute {name!r}: use 0/1, not a bool")
    if isinstance(value, int):
        return encoded + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, float):
        return encoded + _key(2, _FIXED32) + struct.pack("<f", value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, str):
        return encoded + _str(4, value) + _int(20, _ATTR_STRING)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return encoded + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)
    raise TypeError(f"attribute {name!r}: unsupported value {value!r}")


def node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str,
    **attributes: int | float | str | Sequence[int],
) -> bytes:
    """A ``NodeProto`` of the default domain; attributes are written sorted by name (as ``onnx.helper``
    writes them, so the bytes match)."""
    return (
        b"".join(_str(1, i) for i in inputs)
        + b"".join(_str(2, o) for o in outputs)
        + _str(3, name)
        + _str(4, op_type)
        + _messages(5, (_attribute(k, v) for k, v in sorted(attributes.items())))
    )


def value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> bytes:
    """A tensor ``ValueInfoProto``; ``shape`` holds sizes (``int``) or symbolic names (``str``)."""
    dims = [_int(1, d) if isinstance(d, int) else _str(2, d) for d in shape]
    tensor_shape = _messages(1, dims)
    tensor_type = _int(1, elem_type) + _bytes(2, tensor_shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def model(
    *,
    graph_name: str,
    nodes: Sequence[bytes],
    initializers: Sequence[bytes],
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    opset: int,
    ir_version: int,
    producer_name: str = "",
    doc_string: str = "",
) -> bytes:
    """A serialised ``ModelProto``: one graph, one default-domain opset import."""
    graph = (
        _messages(1, nodes)
        + _str(2, graph_name)
        + _messages(5, initializers)
        + _messages(11, inputs)
        + _messages(12, outputs)
    )
    opset_import = _str(1, "") + _int(2, opset)
    header = _int(1, ir_version) + (_str(2, producer_name) if producer_name else b"")
    return header + (_str(6, doc_string) if doc_string else b"") + _bytes(7, graph) + _bytes(8, opset_import)
