"""Fuse the image encoder's self-attention blocks into ONNX Runtime's ``Attention`` operator, at import.

The traced ViT encoder computes each layer's attention as three ``MatMul`` + ``Add`` projections, head
reshapes and transposes, ``MatMul`` · scale → ``Softmax`` → ``MatMul`` and a transpose back: a dozen
operators and four copies of the activations per layer. ONNX Runtime's contrib ``Attention``
(``com.microsoft``, CPU kernel) computes the same thing — one GEMM for the concatenated query/key/value
projections (bias added as the projections' ``Add`` does), then per image and head
``softmax(scale · Q Kᵀ) V`` — with no intermediate copies. The formula is unchanged (the scale is the
graph's own constant, a power of two for every head width that is one; no approximation is
introduced); only the order of floating-point operations inside the kernels differs, as between any
two BLAS libraries, which :func:`~sparkvision.importers.vision_encoder_decoder.import_vision_encoder_decoder`
checks against torch like every exported graph.

ONNX Runtime's own transformer optimizer (``onnxruntime.transformers.optimizer``) does not match this
graph (the trace keeps two no-op ``Cast`` nodes after the softmax and puts the scale after the product),
hence this small, strict matcher: a block that does not have exactly the expected shape is left as it is.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .common import require

__all__ = ["fuse_attention"]

_FLOAT = 1  # onnx.TensorProto.FLOAT


class _Graph:
    """Producer / consumer lookups and constant values over an ONNX graph."""

    def __init__(self, graph: Any) -> None:
        onnx = require("onnx", "importing a model")
        self.onnx = onnx
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in graph.output}
        self.initializers = {i.name: i for i in graph.initializer}

    def op(self, name: str, op_type: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str, op_type: str) -> Any:
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            return None
        return users[0]

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer, a ``Constant`` node or an ``Identity`` of either."""
        if name in self.initializers:
            return self.onnx.numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return self.constant(node.input[0])
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return self.onnx.numpy_helper.to_array(node.attribute[0].t)
        return None

    def perm(self, node: Any) -> list[int]:
        for attribute in node.attribute:
            if attribute.name == "perm":
                return list(attribute.ints)
        return []


def _projection(
    g: _Graph, name: str, perm: list[int]
) -> tuple[list[Any], str, np.ndarray, np.ndarray] | None:
    """``Transpose(perm) ← Reshape ← Add(bias) ← MatMul(x, W)``: the nodes, x, W and the bias."""
    transpose = g.op(name, "Transpose")
    if transpose is None or g.perm(transpose) != perm or len(g.consumers[name]) != 1:
        return None
    reshape = g.op(transpose.input[0], "Reshape")
    if reshape is None or len(g.consumers[reshape.output[0]]) != 1:
        return None
    add = g.op(reshape.input[0], "Add")
    if add is None or len(g.consumers[add.output[0]]) != 1:
        return None
    for bias_name, product in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        matmul = g.op(product, "MatMul")
        bias = g.constant(bias_name)
        if matmul is None or bias is None or len(g.consumers[product]) != 1:
            continue
        weight = g.constant(matmul.input[1])
        if weight is None or weight.ndim != 2 or bias.shape != (weight.shape[1],):
            return None
        return [transpose, reshape, add, matmul], matmul.input[0], weight, bias
    return None


def _match(g: _Graph, softmax: Any, num_heads: int) -> tuple[list[Any], dict[str, Any]] | None:
    """The attention block around ``softmax``, or ``None`` when it is not exactly the traced ViT form."""
    onnx = g.onnx
    scale_node = g.op(softmax.input[0], "Mul")
    if scale_node is None or len(g.consumers[scale_node.output[0]]) != 1:
        return None
    scores = None
    for product, factor in (
        (scale_node.input[0], scale_node.input[1]),
        (scale_node.input[1], scale_node.input[0]),
    ):
        value = g.constant(factor)
        if g.op(product, "MatMul") is not None and value is not None and value.size == 1:
            scores, scale = g.op(product, "MatMul"), float(value.reshape(()))
            break
    if scores is None or len(g.consumers[scores.output[0]]) != 1:
        return None
    query = _projection(g, scores.input[0], [0, 2, 1, 3])
    key = _projection(g, scores.input[1], [0, 2, 3, 1])
    if query is None or key is None:
        return None
    # softmax → (no-op float casts) → MatMul with the values
    nodes = [scale_node, scores, softmax]
    name = softmax.output[0]
    while True:
        users = g.consumers.get(name, [])
        if len(users) != 1 or name in g.outputs:
            return None
        user = users[0]
        if user.op_type == "Cast" and onnx.helper.get_attribute_value(user.attribute[0]) == _FLOAT:
            nodes.append(user)
            name = user.output[0]
            continue
        break
    mixed = user
    if mixed.op_type != "MatMul" or mixed.input[0] != name:
        return None
    value = _projection(g, mixed.input[1], [0, 2, 1, 3])
    back = g.only_consumer(mixed.output[0], "Transpose")
    if value is None or back is None or g.perm(back) != [0, 2, 1, 3]:
        return None
    merge = g.only_consumer(back.output[0], "Reshape")
    if merge is None:
        return None
    x = query[1]
    if key[1] != x or value[1] != x:
        return None
    hidden = query[2].shape[1]
    if any(p[2].shape != (query[2].shape[0], hidden) for p in (key, value)) or hidden % num_heads:
        return None
    nodes += [mixed, back, merge, *query[0], *key[0], *value[0]]
    return nodes, {
        "input": x,
        "output": merge.output[0],
        "weight": np.concatenate([query[2], key[2], value[2]], axis=1),
        "bias": np.concatenate([query[3], key[3], value[3]]),
        "scale": scale,
    }


def fuse_attention(path: Path, num_heads: int) -> int:
    """Rewrite ``path`` in place with every matching self-attention block fused; the number fused.

    ``num_heads`` is the encoder's attention head count (from its config).
    """
    onnx = require("onnx", "importing a model")
    model = onnx.load(str(path))
    g = _Graph(model.graph)
    removed: set[int] = set()
    added: list[tuple[int, Any]] = []
    for softmax in [n for n in model.graph.node if n.op_type == "Softmax"]:
        found = _match(g, softmax, num_heads)
        if found is None:
            continue
        nodes, block = found
        if any(id(n) in removed for n in nodes):
            continue
        prefix = softmax.name or block["output"]
        weight, bias = f"{prefix}/qkv_weight", f"{prefix}/qkv_bias"
        model.graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(block["weight"].astype(np.float32), weight),
                onnx.numpy_helper.from_array(block["bias"].astype(np.float32), bias),
            ]
        )
        fused = onnx.helper.make_node(
            "Attention",
            [block["input"], weight, bias],
            [block["output"]],
            name=f"{prefix}/Attention",
            domain="com.microsoft",
            num_heads=num_heads,
            scale=block["scale"],
        )
        position = min(i for i, n in enumerate(model.graph.node) if id(n) in {id(m) for m in nodes})
        removed.update(id(n) for n in nodes)
        added.append((position, fused))
    if not added:
        return 0
    at = dict(added)
    kept = []
    for i, node in enumerate(model.graph.node):
        if i in at:
            kept.append(at[i])
        if id(node) not in removed:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _drop_unused(model)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    return len(added)


def _drop_unused(model: Any) -> None:
    """Remove nodes and initializers nothing reads any more (the shape arithmetic of fused blocks)."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [i for i in graph.initializer if i.name not in needed]
    for initializer in unused:
        graph.initializer.remove(initializer)
