"""Import a plain ONNX classifier: you give the labels and the preprocessing, we check the graph.

``sparkvision import model.onnx --labels labels.txt --size 224 --mean 0.485,0.456,0.406 --std …``

The graph must take one float32 NCHW image batch (3 channels, the given size or symbolic) and give
one ``N × C`` score output (pick it with ``--output`` when there are several; ``--embeddings-output``
names an optional ``N × D`` feature output). Its tensors are renamed to our contract
(``pixel_values`` → ``logits``/``embeddings``), unused outputs are dropped, and ONNX Runtime must run
it at batch sizes 1 and 2 with ``C == len(labels)``; a graph with a frozen batch size is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelImportError
from ..models.spec import MODEL_FILE, ModelSpec
from ..preprocess import PreprocessSpec
from .common import check_label_count, imagenet_synsets_for, require, sha256_files

__all__ = ["import_onnx_file"]

_FLOAT = 1  # onnx.TensorProto.FLOAT


def _dims(value_info: Any) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _describe(values: Sequence[Any]) -> str:
    return ", ".join(f"{v.name} {_dims(v)}" for v in values)


def _rename(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    taken = {n for node in graph.node for n in list(node.input) + list(node.output)}
    taken |= {i.name for i in graph.initializer} | {v.name for v in graph.input}
    if new in taken:
        raise ModelImportError(f"the graph already has a tensor named {new!r}; cannot rename {old!r} to it")
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def import_onnx_file(
    path: Path,
    directory: Path,
    *,
    name: str,
    labels: Sequence[str],
    preprocess: PreprocessSpec,
    activation: str | None = None,
    output: str | None = None,
    embeddings_output: str | None = None,
    family: str = "onnx",
    source: str | None = None,
    license: str | None = None,
    synsets: Sequence[str] | None = None,
) -> ModelSpec:
    """Check ``path``, rename its tensors to our contract and save it into ``directory``."""
    onnx = require("onnx", "importing an ONNX file")

    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"{path} does not exist")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelImportError(
            f"{path} is not a valid ONNX model: {str(exc).strip().splitlines()[0]}"
        ) from exc
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ModelImportError(
            f"{path} must take exactly one input (a float32 N×3×H×W image batch); it takes "
            f"{len(inputs)}: {_describe(inputs) or 'none'}"
        )
    image = inputs[0]
    dims = _dims(image)
    if image.type.tensor_type.elem_type != _FLOAT or len(dims) != 4:
        raise ModelImportError(f"{path}: input {_describe([image])} is not a float32 N×3×H×W batch")
    if dims[1] != 3 and dims[1] != "?" and not isinstance(dims[1], str):
        nhwc = " (it looks channels-last: export it as NCHW)" if dims[3] == 3 else ""
        raise ModelImportError(f"{path}: input {_describe([image])} does not have 3 channels first{nhwc}")
    for side in dims[2:]:
        if isinstance(side, int) and side != preprocess.size:
            raise ModelImportError(
                f"{path}: input {_describe([image])} expects {side} px images but --size is {preprocess.size}"
            )

    names = [o.name for o in graph.output]
    if output is None:
        if len(names) == 1:
            output = names[0]
        elif "logits" in names:
            output = "logits"
        else:
            raise ModelImportError(
                f"{path} has {len(names)} outputs ({_describe(graph.output)}); name the one holding the "
                f"class scores with --output"
            )
    for wanted, what in ((output, "--output"), (embeddings_output, "--embeddings-output")):
        if wanted is not None and wanted not in names:
            raise ModelImportError(
                f"{path} has no output {wanted!r} ({what}); its outputs: {', '.join(names)}"
            )
    keep = [output] + ([embeddings_output] if embeddings_output else [])
    for value in [o for o in graph.output if o.name not in keep]:
        graph.output.remove(value)
    _rename(graph, image.name, "pixel_values")
    _rename(graph, output, "logits")
    if embeddings_output:
        _rename(graph, embeddings_output, "embeddings")
    target = directory / MODEL_FILE
    onnx.save(model, str(target))

    outputs = ("logits", "embeddings") if embeddings_output else ("logits",)
    num_classes = _check_runs(target, preprocess.size, outputs, path)
    check_label_count(labels, num_classes, str(path))
    return ModelSpec(
        name=name,
        family=family,
        preprocess=preprocess,
        labels=tuple(labels),
        synsets=tuple(synsets) if synsets is not None else imagenet_synsets_for(labels),
        activation=activation or "softmax",  # type: ignore[arg-type]
        outputs=outputs,
        source=source or f"onnx:{path.name}",
        license=license or "",
        weights_sha256=sha256_files([path]),
        extra={"importer": "onnx"},
    )


def _check_runs(target: Path, size: int, outputs: Sequence[str], source: Path) -> int:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelImportError(f"{source} does not load in ONNX Runtime: {str(exc).splitlines()[0]}") from exc
    classes = None
    for batch in (1, 2):
        pixels = np.random.default_rng(batch).standard_normal((batch, 3, size, size), dtype=np.float32)
        try:
            results = session.run(list(outputs), {"pixel_values": pixels})
        except Exception as exc:
            raise ModelImportError(
                f"{source} fails on a batch of {batch} images (sparkvision runs batches, so the batch "
                f"dimension must be dynamic): {str(exc).strip().splitlines()[0]}"
            ) from exc
        for name, result in zip(outputs, results):
            if result.ndim != 2 or result.shape[0] != batch:
                raise ModelImportError(
                    f"{source}: output {name!r} has shape {result.shape} for a batch of {batch}; "
                    f"expected ({batch}, N)"
                )
        classes = results[0].shape[1]
    assert classes is not None
    return int(classes)
