"""Fuse a base network and a trained linear head into one ONNX model.

The base model's graph is cut at its ``embeddings`` output (every node that output does not depend on
— the old ImageNet classifier — is dropped with its weights), and one ``Gemm`` is appended::

    pixel_values ─► base network ─► embeddings ─► Gemm(head.weight, head.bias) ─► logits

Both ``logits`` and ``embeddings`` stay graph outputs, so the result is an ordinary sparkvision model:
the CLI, Spark stages and the web service run it (and can still export embeddings) without knowing it
was trained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelFormatError
from ..extras import require
from .head import LinearHead

if TYPE_CHECKING:
    import onnx

__all__ = ["fuse_head"]

EMBEDDINGS = "embeddings"
LOGITS = "logits"
_HEAD_WEIGHT = "trained_head.weight"
_HEAD_BIAS = "trained_head.bias"


def _prune_to(graph: onnx.GraphProto, output: str) -> list[onnx.NodeProto]:
    """The nodes ``output`` depends on, in their original (topological) order."""
    producers = {name: node for node in graph.node for name in node.output}
    needed: set[int] = set()
    stack = [output]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is None:
            continue  # a graph input or an initializer
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
        for attr in node.attribute:  # subgraphs (If/Loop) may read outer-scope values
            for sub in [attr.g, *attr.graphs]:
                stack.extend(n for sub_node in sub.node for n in sub_node.input if n)
    return [node for node in graph.node if id(node) in needed]


def fuse_head(base_model: str | Path, head: LinearHead, out_file: str | Path) -> Path:
    """Write ``base_model`` (an ONNX file with an ``embeddings`` output) with ``head`` on top.

    The head's input dimension must match the base's embedding size. The written model is checked
    with ONNX's checker; outputs are ``logits`` (``batch × classes``) then ``embeddings``.
    """
    onnx = require("onnx", extra="train", purpose="saving a trained model")
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(base_model))
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if EMBEDDINGS not in outputs:
        raise ModelFormatError(
            f"{base_model} has no '{EMBEDDINGS}' output (outputs: {', '.join(outputs) or 'none'}); "
            "only a model that exports embeddings can be a base for training"
        )
    emb_info = outputs[EMBEDDINGS]
    dims = emb_info.type.tensor_type.shape.dim
    if len(dims) != 2:
        raise ModelFormatError(
            f"{base_model}: '{EMBEDDINGS}' should be 2-D (batch × features), got rank {len(dims)}"
        )
    if dims[1].HasField("dim_value") and dims[1].dim_value != head.dim:
        raise ModelFormatError(
            f"the head expects {head.dim}-d embeddings but {base_model} produces {dims[1].dim_value}-d ones"
        )
    batch_dim = dims[0].dim_param or "batch"

    nodes = _prune_to(graph, EMBEDDINGS)
    used = {name for node in nodes for name in node.input}
    for node in nodes:
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs]:
                used.update(n for sub_node in sub.node for n in sub_node.input)
    initializers = [init for init in graph.initializer if init.name in used]
    taken = {init.name for init in initializers} | {n for node in nodes for n in node.output}
    if _HEAD_WEIGHT in taken or _HEAD_BIAS in taken:
        raise ModelFormatError(f"{base_model} already uses the names {_HEAD_WEIGHT}/{_HEAD_BIAS}")
    initializers += [
        numpy_helper.from_array(np.ascontiguousarray(head.weight, dtype=np.float32), _HEAD_WEIGHT),
        numpy_helper.from_array(np.ascontiguousarray(head.bias, dtype=np.float32), _HEAD_BIAS),
    ]
    if LOGITS in taken:  # the base's own logits were an input to the embeddings?! refuse rather than guess
        raise ModelFormatError(
            f"{base_model}: '{EMBEDDINGS}' depends on '{LOGITS}'; cannot replace the classifier"
        )
    nodes.append(
        helper.make_node(
            "Gemm", [EMBEDDINGS, _HEAD_WEIGHT, _HEAD_BIAS], [LOGITS], name="trained_head", transB=1
        )
    )
    logits_info = helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [batch_dim, head.num_classes])
    value_info = [v for v in graph.value_info if v.name in taken]
    original_initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in original_initializers or i.name in used]
    new_graph = helper.make_graph(
        nodes,
        graph.name or "sparkvision",
        inputs=inputs,
        outputs=[logits_info, emb_info],
        initializer=initializers,
        value_info=value_info,
    )
    fused = helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    fused.producer_name = "sparkvision.training"
    for entry in model.metadata_props:
        fused.metadata_props.add(key=entry.key, value=entry.value)
    onnx.checker.check_model(fused)
    out = Path(out_file)
    onnx.save(fused, str(out))
    return out
