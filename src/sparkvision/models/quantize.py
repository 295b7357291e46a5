"""int8 models: ONNX Runtime static quantization from an fp32 model directory plus activation ranges.

Static quantization needs, besides the weights, the range each activation tensor takes on real
images (its "calibration"). We split the two steps so that users never need calibration images for
the catalogue models:

1. :func:`collect_ranges` runs the fp32 model over calibration images and records each activation's
   range (by default the one whose 8-bit round trip loses least on the values seen, below) and the
   mean of every channel entering a convolution or fully connected layer (for bias correction). For
   ``efficientnet_lite{0,1,2}`` this ran once, in ``scripts/calibrate_int8.py``, and its result
   ships in the package as JSON (the ranges take a few kilobytes, the channel means, as float16,
   40-80 KB per model; ``sparkvision/data/int8/<model>.json``);
2. :func:`quantize_model_dir` builds the int8 ``model.onnx`` from the fp32 one and those ranges —
   offline, in about a second, on the user's machine (the catalogue's ``*_int8`` entries do this on
   first use).

:func:`quantize` does both for any model (imported ones too): ``sparkvision quantize MODEL
--calibration DIR --name NAME``.

The scheme: uint8 activations (asymmetric, per tensor), int8 weights per output channel (symmetric),
QDQ format, 8-bit weights (pair-limited in dense layers on CPUs without VNNI). Why:

* u8 activations / s8 weights is what ONNX Runtime's documentation recommends for x86-64 CPUs, with
  and without VNNI; its int8 kernels use VNNI (``VPDPBUSD``) where the CPU has it and
  ``VPMADDUBSW`` on AVX2-only CPUs.
* per-channel weights: EfficientNet-Lite's depthwise convolutions (batch norm folded in) have very
  different ranges per channel; one scale per tensor loses accuracy.
* the weight range depends on the CPU (:func:`reduce_range_for_cpu`): 8 bits where it has VNNI or
  AMX; elsewhere (AVX2-only, AVX-512 without VNNI, unknown) ``"pairs"``: 8-bit weights whose
  neighbouring input channels reach at most 128 steps together in every layer but the depthwise
  ones, because ONNX Runtime's AVX2 kernel (``VPMADDUBSW``) adds two such products in a saturating
  16-bit lane (session 6 used 7-bit weights there, twice as coarse). The catalogue's int8 models are
  built on the user's machine, so each gets its own; a cached one built for the other kind of CPU
  (or by session 6's rule) is built again.
* activation ranges by least squared error (``collect_ranges(method="mse")``): per tensor, the range
  whose uint8 round trip loses least over the calibration values, instead of the averaged batch
  extremes of earlier releases; it lowered the int8-fp32 KL divergence on both halves of the test
  photos for every model and weight range (docs/performance.md, session 7).
* bias correction (Nagel et al., "Data-Free Quantization", 2019, section 4.2): rounding the weights
  to 8 bits shifts each output channel's mean by ``ΔW · E[x]`` (``ΔW``: the rounding error of its
  weights, ``E[x]``: the mean of its input channels on the calibration images). The shift is
  systematic, so it adds up through the network; subtracting it from the layer's bias costs nothing
  at run time. On the 102 test photos it raised top-1 agreement with fp32 from 0.86 to 0.89 (Lite0),
  0.80 to 0.87 (Lite1) and 0.92 to 0.93 (Lite2), and the cosine between int8 and fp32 logits from
  0.985 to 0.994; with the calibration's averaged ranges (:func:`collect_ranges`) 0.96, 0.89 and
  0.93 (docs/performance.md). What remains is rounding noise, about as large as the
  change that moving every input pixel by ±1 grey level makes to the fp32 model itself: photos
  whose two best labels are nearly tied can swap (``tests/test_int8.py``).
* a few nodes stay in float (``ActivationRanges.float_nodes``, shipped with the ranges since format 3):
  for EfficientNet-Lite the stem, the first block and the global pooling. Quantizing any one of them
  alone costs little, but the 32-channel activations between them (half the input's resolution) lose
  much to 8-bit rounding together: keeping the three convolutions in float cut the int8-fp32 KL
  divergence 2.5-5x and raised top-1 agreement on the 102 test photos to 0.96 / 0.95 / 0.97 (Lite
  0/1/2; clear photos all), at a cost within the noise of paired timings (docs/performance.md).
* float outputs: the quantizer would also round the model's outputs (the logits) to 8 bits.
* QDQ rather than QOperator: ONNX Runtime documents QDQ as the preferred format for its CPU
  provider (its int8 kernels are fused from the QDQ pattern). Both gave the same top-1 on every
  photo here and the same speed within the noise of paired runs (``benchmarks/int8_formats.py``);
  the issue's quiet probe found the same (810-818 img/s, model only).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, ImageDecodeError, InputNotFoundError, ModelFormatError
from ..extras import require
from ..images import decode_image, iter_image_files
from ..preprocess import preprocess
from .spec import MODEL_FILE, ModelSpec
from .store import build_model_dir, cached_model_dir, load_model_dir, validate_model_name

__all__ = [
    "INT8_SUFFIX",
    "ActivationRanges",
    "QuantFormat",
    "ReduceRange",
    "built_for_this_cpu",
    "collect_ranges",
    "cpu_flags",
    "int8_variant",
    "is_int8",
    "quantize",
    "quantize_model_dir",
    "reduce_range_for_cpu",
    "shipped_ranges",
    "warn_if_saturating",
]

log = logging.getLogger(__name__)

#: Catalogue names of int8 variants: ``efficientnet_lite0`` → ``efficientnet_lite0_int8``.
INT8_SUFFIX = "_int8"
RANGES_FORMAT_VERSION = 3
#: Versions :meth:`ActivationRanges.from_dict` reads (1: ranges only, no channel means; 2: no float nodes).
_READABLE_VERSIONS = (1, 2, 3)
#: Where a quantized model directory keeps the ranges it was built from (provenance, rebuilds).
RANGES_FILE = "int8_ranges.json"

QuantFormat = Literal["qdq", "qoperator"]
WeightType = Literal["int8", "uint8"]
#: Weight range: ``False`` 8 bits, ``True`` 7 bits, ``"dense"`` 7 bits except depthwise convolutions,
#: ``"pairs"`` 8 bits with every two neighbouring input-channel weights of a dense layer within ±128
#: together (see :func:`reduce_range_for_cpu`); ``"auto"``: what :func:`reduce_range_for_cpu` picks here.
ReduceRange = bool | Literal["dense", "pairs", "auto"]
#: The weight ranges :func:`reduce_range_for_cpu` can pick.
WeightRange = bool | Literal["dense", "pairs"]


@dataclass(frozen=True)
class ActivationRanges:
    """The calibration result for one fp32 model: ``tensor name → (min, max)`` on real images.

    Attributes:
        model: name of the fp32 model the ranges belong to.
        weights_sha256: that model's ``weights_sha256``; building refuses other weights, since
            ranges measured on one set of weights mean nothing for another.
        ranges: activation tensor name → ``(lowest, highest)`` seen on the calibration images.
        images: how many calibration images were run.
        calibration: where the images came from (human-readable provenance).
        channel_means: input tensor of each ``Conv`` / ``Gemm`` → the mean of each of its channels on
            the calibration images (float32), for bias correction; empty in version-1 files, whose
            models are built without it.
        float_nodes: names of the fp32 graph's nodes that stay in float in the int8 model (the few
            whose rounding costs the most agreement; see :func:`quantize_model_dir`); empty before
            version 3.
    """

    model: str
    weights_sha256: str | None
    ranges: dict[str, tuple[float, float]]
    images: int
    calibration: str = ""
    method: str = "minmax"
    channel_means: Mapping[str, np.ndarray] = field(default_factory=dict)
    float_nodes: tuple[str, ...] = ()
    format_version: int = field(default=RANGES_FORMAT_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "method": self.method,
            "images": self.images,
            "calibration": self.calibration,
            # float32 values printed with the shortest repr that round-trips: a few KB in all.
            "ranges": {k: [_f32(lo), _f32(hi)] for k, (lo, hi) in sorted(self.ranges.items())},
            # float16 (three significant digits: plenty for a correction term), little-endian, base64.
            "channel_means": {
                k: base64.b64encode(np.asarray(v, "<f2").tobytes()).decode("ascii")
                for k, v in sorted(self.channel_means.items())
            },
            "float_nodes": list(self.float_nodes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActivationRanges:
        version = data.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise ModelFormatError(
                f"activation ranges format {version!r} is not supported "
                f"(this sparkvision reads versions {', '.join(map(str, _READABLE_VERSIONS))})"
            )
        try:
            ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
            means = {
                str(k): np.frombuffer(base64.b64decode(v, validate=True), "<f2").astype(np.float32)
                for k, v in data.get("channel_means", {}).items()
            }
            return cls(
                model=str(data["model"]),
                weights_sha256=data.get("weights_sha256"),
                ranges=ranges,
                images=int(data["images"]),
                calibration=str(data.get("calibration", "")),
                method=str(data.get("method", "minmax")),
                channel_means=means,
                float_nodes=tuple(str(n) for n in data.get("float_nodes", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFormatError(f"invalid activation ranges: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=0) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ActivationRanges:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"cannot read activation ranges from {path}: {exc}") from exc
        return cls.from_dict(data)


def _f32(value: float) -> float:
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def shipped_ranges(model: str) -> ActivationRanges:
    """The activation ranges shipped in the package for a catalogue model (``efficientnet_lite0``...)."""
    resource = resources.files("sparkvision") / "data" / "int8" / f"{model}.json"
    if not resource.is_file():
        raise ModelFormatError(f"no shipped int8 activation ranges for {model!r}")
    return ActivationRanges.from_dict(json.loads(resource.read_text(encoding="utf-8")))


def default_float_nodes(model: str) -> tuple[str, ...]:
    """The nodes a catalogue model's shipped int8 variant keeps in float; ``()`` for other models."""
    try:
        return shipped_ranges(model).float_nodes
    except ModelFormatError:
        return ()


# -- names ------------------------------------------------------------------------------------------
def is_int8(spec: ModelSpec) -> bool:
    """Whether a model directory holds a quantized (int8) model."""
    return spec.extra.get("precision") == "int8"


def int8_variant(name: str) -> str:
    """The catalogue name of a model's int8 variant (``x`` → ``x_int8``; an int8 name stays)."""
    return name if name.endswith(INT8_SUFFIX) else name + INT8_SUFFIX


# -- the weight range for this CPU -------------------------------------------------------------------
#: x86 flags (Linux ``/proc/cpuinfo``) of instructions with which ONNX Runtime's u8 × s8 kernels
#: accumulate in 32 bits: AVX-512 VNNI and AVX-VNNI (``VPDPBUSD``), AMX (``TDPBUSD``).
EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags from ``/proc/cpuinfo`` (x86 Linux); ``None`` where there are none to
    read (another OS, another architecture)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def reduce_range_for_cpu(flags: Iterable[str] | None = None) -> WeightRange:
    """The weight range for an int8 model built for a CPU with these flags (default: this CPU's).

    * VNNI or AMX (``avx512_vnni``, ``avx_vnni``, ``amx_int8``): ``False``, full 8-bit weights.
      ONNX Runtime multiplies u8 activations by s8 weights and accumulates in 32 bits: exact.
    * anything else (AVX2-only x86, AVX-512 without VNNI, flags unknown): ``"pairs"``. There ONNX
      Runtime's u8 × s8 GEMM uses ``VPMADDUBSW``, which adds the products of two neighbouring input
      channels (0 and 1, 2 and 3, …) in a saturating signed 16-bit lane: 255 × (127 + 127)
      overflows it. With plain 8-bit weights Lite0's top-1 agreement with fp32 on the 102 test
      photos was 0.96 with VNNI but 0.85 on the AVX2 path (emulated: ``scripts/check_int8_avx2.py``).
      ``"pairs"`` keeps 8-bit weights but scales each output channel of a dense layer so that two
      neighbouring weights never reach more than 128 steps together (255 × 128 fits): the sum
      cannot saturate, so the AVX2 path computes exactly what VNNI does (bit-identical logits
      under QEMU), and the step is only ≈ 1.1-1.4× an unconstrained 8-bit one where session 6's
      ``"dense"`` (7-bit: |w| ≤ 64) doubled it — the int8-fp32 KL divergence of the dense layers'
      rounding fell ≈ 3× (docs/performance.md, session 7). Depthwise convolutions keep plain 8
      bits: their kernel does not saturate (bit-identical results on both paths). The kernels and so
      the speed are those of 8-bit weights; u8 weights (no saturation either) ran ≈ 5× slower than
      fp32 on the VNNI machine.

    Unknown CPUs get the safe range: exact on either kind of kernel.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    if flags is not None and flags & EXACT_INT8_FLAGS:
        return False
    return "pairs"


def _resolve_reduce_range(reduce_range: ReduceRange) -> WeightRange:
    if reduce_range == "auto":
        return reduce_range_for_cpu()
    if reduce_range not in (True, False, "dense", "pairs"):
        raise ConfigError(
            f"reduce_range must be True, False, 'dense', 'pairs' or 'auto', got {reduce_range!r}"
        )
    return reduce_range


def _built_range(spec: ModelSpec) -> bool | str:
    """The weight range an int8 model was built with (models built before it was recorded: 8 bits)."""
    return dict(spec.extra.get("quantization") or {}).get("reduce_range", False)


_CHECKED_FOR_SATURATION: set[str] = set()


def warn_if_saturating(spec: ModelSpec) -> None:
    """Log a warning (once per model and process) when an int8 model built with 8-bit weights in its
    dense layers runs on a CPU whose int8 kernel saturates with them (no VNNI/AMX): a model
    quantized on another machine — a Spark pipeline saved or shipped from a VNNI driver to AVX2
    workers, a ``sparkvision quantize`` output copied over — then loses accuracy silently (Lite0's
    agreement with fp32 0.96 → 0.85). Catalogue models are rebuilt for the CPU instead."""
    if not is_int8(spec) or spec.name in _CHECKED_FOR_SATURATION:
        return
    _CHECKED_FOR_SATURATION.add(spec.name)  # reads /proc/cpuinfo: once per model and process
    if _built_range(spec) is False and reduce_range_for_cpu() is not False:
        log.warning(
            "int8 model %r has 8-bit weights, built for a CPU with VNNI; this CPU has none, and ONNX "
            "Runtime's int8 kernel saturates with such weights here (lower accuracy). Quantize it on this "
            "kind of CPU: sparkvision quantize MODEL --calibration DIR --name NAME",
            spec.name,
        )


def built_for_this_cpu(spec: ModelSpec) -> bool:
    """Whether an int8 model was built with the weight range :func:`reduce_range_for_cpu` picks here
    (a model built before the range was recorded had 8-bit weights)."""
    return _built_range(spec) == reduce_range_for_cpu()


# -- step 1: calibration ----------------------------------------------------------------------------
def calibration_batches(
    images: Iterable[Any], spec: ModelSpec, *, batch_size: int = 8
) -> Iterator[np.ndarray]:
    """Preprocessed float32 batches of the given images (paths, bytes, PIL images, arrays), decoded
    and resized exactly as the reference processor does. Unreadable images are skipped with a
    warning."""
    batch: list[np.ndarray] = []
    for image in images:
        try:
            decoded = decode_image(image)
        except ImageDecodeError as exc:
            log.warning(
                "calibration: skipping %s: %s", image if isinstance(image, (str, Path)) else "image", exc
            )
            continue
        batch.append(preprocess(decoded.image, spec.preprocess))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


RangeMethod = Literal["mse", "average"]


def collect_ranges(
    model_dir: str | Path,
    images: Iterable[Any],
    *,
    calibration: str = "",
    batch_size: int = 8,
    float_nodes: Sequence[str] = (),
    method: RangeMethod = "mse",
) -> ActivationRanges:
    """Run the fp32 model in ``model_dir`` over ``images`` and record every activation's range and
    the channel means of every ``Conv`` / ``Gemm`` input (for bias correction); ``float_nodes``
    (node names of the fp32 graph) are recorded as the nodes to keep in float.

    ``method`` chooses each tensor's range from what the calibration images give it:

    * ``"mse"`` (default): the range whose 8-bit round trip (uint8, ONNX Runtime's scale and zero
      point) loses least in mean squared error over every value the tensor took (a histogram of
      2,048 bins between its lowest and highest value; each end searched between 0.3× and 1× of
      those): a wide range rounds every value coarsely, a narrow one clips the rare large values.
      The ranges come out 0.6-1.3× as wide as ``"average"``'s (median ≈ 0.9×); against fp32 the
      int8 models' KL divergence on the test photos fell 10-40 % on both halves of them
      (docs/performance.md, session 7).
    * ``"average"``: the mean, over batches of ``batch_size`` images, of the tensor's lowest and
      highest value in the batch (what ONNX Runtime's MinMax calibrator gives with
      ``moving_average``): a rare outlier widens the 8-bit step of every other image less than with
      the extremes over all images.

    The model's input keeps its whole range (8 bits over it are exactly the photo's grey levels).
    """
    require("onnx", extra="int8", purpose="calibrating a model for int8")
    if method not in ("mse", "average"):
        raise ConfigError(f"method must be 'mse' or 'average', got {method!r}")
    model_dir = Path(model_dir)
    spec = load_model_dir(model_dir)
    if is_int8(spec):
        raise ConfigError(f"{spec.name!r} is already an int8 model: calibrate its fp32 original")
    _check_node_names(model_dir / MODEL_FILE, float_nodes, spec.name)
    batches = list(calibration_batches(images, spec, batch_size=batch_size))
    count = sum(len(b) for b in batches)
    if count == 0:
        raise InputNotFoundError("no readable calibration images")
    input_name = _input_name(model_dir / MODEL_FILE)
    with tempfile.TemporaryDirectory(prefix="sparkvision-calibrate-") as tmp:
        stats = _ActivationStats(model_dir / MODEL_FILE, input_name, Path(tmp), float_nodes)
        stats.collect(batches, histograms=method == "mse")
    if method == "mse":
        ranges = {name: stats.mse_range(name) for name in stats.tensors}
    else:
        ranges = {
            name: (float(np.mean(stats.lowest[name])), float(np.mean(stats.highest[name])))
            for name in stats.tensors
        }
    ranges[input_name] = (min(float(b.min()) for b in batches), max(float(b.max()) for b in batches))
    return ActivationRanges(
        model=spec.name,
        weights_sha256=spec.weights_sha256,
        ranges=ranges,
        images=count,
        calibration=calibration,
        method="mse-histogram" if method == "mse" else "minmax-moving-average",
        channel_means=stats.channel_means(),
        float_nodes=tuple(float_nodes),
    )


class _ActivationStats:
    """What calibration records of the fp32 model's activations, batch by batch: each tensor's lowest
    and highest value per batch, its histogram (for ``"mse"`` ranges), and the channel sums of every
    quantized ``Conv`` / ``Gemm`` input (for bias correction). One ONNX Runtime session of the model
    with every activation as an output."""

    BINS = 2048

    def __init__(self, model_file: Path, input_name: str, tmp: Path, float_nodes: Iterable[str]) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(model_file))
        initializers = {i.name for i in model.graph.initializer}
        self.input_name = input_name
        self.tensors = sorted(
            {v for node in model.graph.node for v in (*node.input, *node.output) if v} - initializers
        )
        self.layer_inputs = _layer_inputs(model, float_nodes)
        outputs = {o.name for o in model.graph.output}
        for name in self.tensors:
            if name not in outputs:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        path = tmp / "activations.onnx"
        onnx.save_model(model, str(path), save_as_external_data=model.ByteSize() > 1_500_000_000)
        del model
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.lowest: dict[str, list[float]] = {n: [] for n in self.tensors}
        self.highest: dict[str, list[float]] = {n: [] for n in self.tensors}
        self.histograms: dict[str, np.ndarray] = {}
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = dict.fromkeys(self.layer_inputs, 0)

    def _run(self, batch: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        return zip(self.tensors, self._session.run(self.tensors, {self.input_name: batch}))

    def collect(self, batches: Sequence[np.ndarray], *, histograms: bool) -> None:
        wanted = set(self.layer_inputs)
        for batch in batches:
            for name, value in self._run(batch):
                self.lowest[name].append(float(value.min()))
                self.highest[name].append(float(value.max()))
                if name in wanted:
                    channels = np.moveaxis(value, 1, 0).reshape(value.shape[1], -1)
                    self._sums[name] = self._sums.get(name, 0) + channels.sum(axis=1, dtype=np.float64)
                    self._counts[name] += channels.shape[1]
        if not histograms:
            return
        for batch in batches:  # a second pass: the bins span each tensor's extremes over all batches
            for name, value in self._run(batch):
                counts, _ = np.histogram(value, bins=self.BINS, range=self._extent(name))
                self.histograms[name] = self.histograms.get(name, 0) + counts

    def _extent(self, name: str) -> tuple[float, float]:
        lo, hi = min(self.lowest[name]), max(self.highest[name])
        return (lo, hi) if hi > lo else (lo, lo + 1.0)

    def channel_means(self) -> dict[str, np.ndarray]:
        return {n: (self._sums[n] / self._counts[n]).astype(np.float32) for n in self.layer_inputs}

    def mse_range(self, name: str, steps: int = 60, narrowest: float = 0.3) -> tuple[float, float]:
        """The range of ``name`` whose uint8 round trip has the least squared error over its histogram."""
        lo, hi = self._extent(name)
        edges = np.linspace(lo, hi, self.BINS + 1)
        values, counts = (edges[:-1] + edges[1:]) / 2, self.histograms[name].astype(np.float64)
        keep = counts > 0
        values, counts = values[keep], counts[keep]
        factors = np.linspace(narrowest, 1.0, steps)
        lows = lo * factors if lo < 0 else np.array([lo])
        highs = hi * factors if hi > 0 else np.array([hi])
        best = (np.inf, lo, hi)
        for low in lows:
            error = _round_trip_error(values, counts, low, highs)
            i = int(np.argmin(error))
            if error[i] < best[0]:
                best = (float(error[i]), float(low), float(highs[i]))
        return best[1], best[2]


def _round_trip_error(values: np.ndarray, counts: np.ndarray, low: float, highs: np.ndarray) -> np.ndarray:
    """Squared error of ``values`` (weighted by ``counts``) after uint8 quantization with the range
    ``(low, high)`` for each of ``highs``, as ONNX Runtime computes scale and zero point (the range
    widened to include 0)."""
    rmin = min(low, 0.0)
    rmax = np.maximum(highs, 0.0)[:, None]
    scale = np.where(rmax > rmin, (rmax - rmin) / 255, 1.0)
    zero = np.clip(np.round(-rmin / scale), 0, 255)
    restored = (np.clip(np.round(values / scale) + zero, 0, 255) - zero) * scale
    return ((values - restored) ** 2 * counts).sum(axis=1)


def _layer_inputs(model: Any, float_nodes: Iterable[str] = ()) -> list[str]:
    """The activation tensors entering the model's ``Conv`` and ``Gemm`` nodes (channel axis 1), but
    for the nodes that stay in float (they need no bias correction)."""
    initializers = {i.name for i in model.graph.initializer}
    skip = set(float_nodes)
    names = {
        node.input[0]
        for i, node in enumerate(model.graph.node)
        if node.op_type in ("Conv", "Gemm")
        and _node_name(node, i) not in skip
        and node.input[0] not in initializers
        and not (node.op_type == "Gemm" and _attribute(node, "transA", 0))
    }
    return sorted(names)


def _attribute(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


#: The operators whose weights the quantizer turns to int8 (the layers one can keep in float).
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def _check_node_names(model_file: Path, names: Iterable[str], model: str) -> None:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    unknown = sorted(set(names) - {_node_name(node, i) for i, node in enumerate(graph.node)})
    if unknown:
        layers = [_node_name(n, i) for i, n in enumerate(graph.node) if n.op_type in _WEIGHTED_OPS]
        shown = ", ".join(layers[:6]) + (f" … ({len(layers)} in all)" if len(layers) > 6 else "")
        raise ConfigError(
            f"{model!r} has no node named {', '.join(map(repr, unknown))}; its layers are named {shown}"
        )


def _node_name(node: Any, index: int) -> str:
    """A node's name, or the one building gives an unnamed node (bias correction finds layers by name)."""
    return node.name or f"sparkvision_node_{index}"


def _input_name(model_file: Path) -> str:
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in initializers)


# -- step 2: building -------------------------------------------------------------------------------
def quantize_model_dir(
    source_dir: str | Path,
    ranges: ActivationRanges,
    target_dir: str | Path,
    *,
    name: str,
    quant_format: QuantFormat = "qdq",
    reduce_range: ReduceRange = "auto",
    weight_type: WeightType = "int8",
    exclude: Sequence[str] = (),
    bias_correction: bool = True,
    float_outputs: bool = True,
) -> ModelSpec:
    """Write the int8 version of the fp32 model in ``source_dir`` into ``target_dir``.

    ``target_dir`` receives ``model.onnx`` and the ranges used (``int8_ranges.json``); the returned
    spec (the fp32 one renamed, with ``extra["precision"] = "int8"`` and the scheme) is for the
    caller to save — :func:`~sparkvision.models.store.build_model_dir` does. Needs no images.

    ``float_outputs``: the model's outputs stay float — ONNX Runtime's quantizer rounds them to 8
    bits too, which on EfficientNet-Lite's logits is a step of 0.05 (enough to swap near-tied
    labels) and clips every logit above the calibration images' highest.

    ``reduce_range``: ``"auto"`` (default) picks the weight range for this CPU
    (:func:`reduce_range_for_cpu`: 8 bits with VNNI/AMX, else ``"pairs"``); ``True`` (7 bits),
    ``"dense"`` (7 bits but in depthwise layers) and ``"pairs"`` can be asked for. The choice is
    recorded in the spec (``extra["quantization"]["reduce_range"]``).

    ``bias_correction`` (when the ranges carry channel means): quantize once, measure each layer's
    weight rounding error, correct the fp32 biases for it (see the module docstring), quantize
    again — the int8 weights are the same, only the int32 biases differ.

    The nodes named in ``ranges.float_nodes`` and ``exclude`` stay in float, and so do the tensors
    between two of them. Keep them in runs that start at the model's input or end at its outputs:
    ONNX Runtime (1.2x) re-quantizes a float ``Conv`` / ``Gemm`` that reads a dequantized tensor and
    feeds a quantize node — per tensor, which loses more than the per-channel weights it replaces
    (its ``WeightBiasQuantization`` graph optimization).
    """
    onnx = require("onnx", extra="int8", purpose="building an int8 model")
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantizationMode, load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if quant_format not in ("qdq", "qoperator"):
        raise ConfigError(f"quant_format must be 'qdq' or 'qoperator', got {quant_format!r}")
    reduce_range = _resolve_reduce_range(reduce_range)
    log.info(
        "int8 weights: %s%s",
        _RANGE_NOTE[reduce_range].removeprefix(", ") or "8-bit",
        " (this CPU has no VNNI/AMX: ONNX Runtime's AVX2 int8 kernels saturate with 8-bit weights)"
        if reduce_range in ("dense", "pairs")
        else "",
    )
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    spec = load_model_dir(source_dir)
    if is_int8(spec):
        raise ConfigError(f"{spec.name!r} is already an int8 model")
    if ranges.weights_sha256 and spec.weights_sha256 and ranges.weights_sha256 != spec.weights_sha256:
        raise ModelFormatError(
            f"the activation ranges were measured on other weights than {spec.name!r}'s "
            f"({ranges.weights_sha256[:12]}… vs {spec.weights_sha256[:12]}…): calibrate this model again "
            "with `sparkvision quantize`"
        )
    model = load_model_with_shape_infer(source_dir / MODEL_FILE)
    activations = {v for node in model.graph.node for v in (*node.input, *node.output) if v}
    activations -= {i.name for i in model.graph.initializer}
    missing = sorted(activations - set(ranges.ranges))
    if missing:
        raise ModelFormatError(
            f"the activation ranges do not match {spec.name!r}'s graph ({len(missing)} tensors without a "
            f"range, e.g. {missing[0]!r}): calibrate this model again with `sparkvision quantize`"
        )
    tensors = TensorsData(
        CalibrationMethod.MinMax,
        {
            k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
            for k, (lo, hi) in ranges.ranges.items()
            if k in activations
        },
    )
    # What quantize_static does once calibration is over (its calibration_cache_path, which would
    # let us pass ranges through the public API, only exists in the newest ONNX Runtime releases).
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # quantize_static's default: all

    def quantized(fp32: Any, quant_format: QuantFormat) -> Any:
        extra: dict[str, Any] = {}
        pairs: dict[str, int] = {}
        if reduce_range == "dense":
            extra["TensorQuantOverrides"] = {
                w: [{"reduce_range": True, "axis": axis}] for w, axis in _dense_weights(fp32).items()
            }
        elif reduce_range == "pairs":
            pairs, overrides = _pair_overrides(fp32)
            extra["TensorQuantOverrides"] = overrides
        args = (fp32, True, reduce_range is True)
        weights = QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8
        types = (weights, QuantType.QUInt8, tensors, [], excluded, op_types, extra)
        if quant_format == "qdq":
            quantizer: Any = QDQQuantizer(*args, *types)
        else:
            quantizer = ONNXQuantizer(*args, QuantizationMode.QLinearOps, True, *types)
        quantizer.quantize_model()
        if pairs:
            _fit_pairs(quantizer.model.model, pairs)
        return quantizer.model.model

    for i, node in enumerate(model.graph.node):
        node.name = _node_name(node, i)
    excluded = list(dict.fromkeys([*ranges.float_nodes, *exclude]))
    unknown = sorted(set(excluded) - {node.name for node in model.graph.node})
    if unknown:
        raise ModelFormatError(
            f"{spec.name!r} has no node named {', '.join(map(repr, unknown))} to keep in float: calibrate "
            "this model again with `sparkvision quantize`"
        )
    corrected = 0
    if bias_correction and ranges.channel_means:
        # QDQ whatever the final format: the same int8 weights, each behind a DequantizeLinear.
        corrected = _correct_biases(model, quantized(copy.deepcopy(model), "qdq"), ranges.channel_means)
    result = quantized(model, quant_format)
    if float_outputs:
        _unquantize_outputs(result)
    for layer in _requantized_float_layers(result, excluded):
        log.warning(
            "%s: ONNX Runtime's WeightBiasQuantization optimization will quantize the float layer %r "
            "again, per tensor (it sits between quantized tensors); keep float nodes in runs from the "
            "model's input or to its outputs",
            name,
            layer,
        )
    target_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(result, str(target_dir / MODEL_FILE))
    ranges.save(target_dir / RANGES_FILE)
    return spec.with_changes(
        name=name,
        extra={
            **dict(spec.extra),
            "precision": "int8",
            "quantized_from": spec.name,
            "quantization": {
                "format": quant_format.upper() if quant_format == "qdq" else "QOperator",
                "activations": "uint8, per tensor",
                "weights": f"{weight_type}, per channel" + _RANGE_NOTE[reduce_range],
                "reduce_range": reduce_range,
                "calibration": ranges.calibration,
                "calibration_images": ranges.images,
                "bias_corrected_layers": corrected,
                "float_nodes": excluded,
            },
        },
    )


def _requantized_float_layers(model: Any, float_nodes: Sequence[str]) -> list[str]:
    """The float ``Conv`` / ``Gemm`` / ``MatMul`` nodes among ``float_nodes`` that read a dequantized
    tensor and write only to a quantize node (directly or through a ``Relu`` / ``Clip``, which ONNX
    Runtime folds into the quantize node): the pattern its ``WeightBiasQuantization`` graph
    optimization quantizes when the session is created."""
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    wanted = set(float_nodes)
    found = []
    for node in model.graph.node:
        if node.name not in wanted or node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        source = producers.get(node.input[0])
        readers = consumers.get(node.output[0], [])
        if len(readers) == 1 and readers[0].op_type in ("Relu", "Clip"):  # fused into the quantize first
            readers = consumers.get(readers[0].output[0], [])
        if (
            source is not None
            and source.op_type == "DequantizeLinear"
            and readers
            and all(r.op_type == "QuantizeLinear" for r in readers)
        ):
            found.append(node.name)
    return found


_RANGE_NOTE = {
    False: "",
    True: ", 7-bit range",
    "dense": ", 7-bit range except depthwise convolutions",
    "pairs": ", 8-bit range with neighbouring input-channel pairs within 128 in dense layers",
}


def _dense_weights(model: Any) -> dict[str, int]:
    """The weights of every ``Conv`` that is not depthwise, and of every ``Gemm`` / ``MatMul``: name →
    the axis of their output channels (the per-channel axis)."""
    initializers = {i.name: i for i in model.graph.initializer}
    weights = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        weight = initializers.get(node.input[1])
        if weight is None:
            continue
        if node.op_type == "Conv":
            if _attribute(node, "group", 1) > 1 and weight.dims[1] == 1:
                continue  # depthwise
            weights[weight.name] = 0
        elif node.op_type == "Gemm":
            weights[weight.name] = 0 if _attribute(node, "transB", 0) else 1
        else:
            weights[weight.name] = len(weight.dims) - 1
    return weights


#: ``"pairs"``: how far two neighbouring int8 weights may reach together. ONNX Runtime's AVX2 kernel
#: (``VPMADDUBSW``) adds the products of two neighbouring input channels in a signed 16-bit lane:
#: 255 × 128 = 32,640 fits, 255 × 129 does not.
PAIR_LIMIT = 128


def _pair_overrides(model: Any) -> tuple[dict[str, tuple[np.ndarray, int, int]], dict[str, list]]:
    """For ``reduce_range="pairs"``: each dense weight's per-channel range overrides for ONNX Runtime's
    quantizer, and the weights whose pairs :func:`_fit_pairs` then checks (name → float weights,
    channel axis, pair axis).

    A layer whose input channels are the kernel's inner dimension (1×1 convolutions, ``Gemm``, 2-D
    ``MatMul`` weights) keeps 8 bits, with each output channel's scale chosen so that no two
    neighbouring input channels (0 and 1, 2 and 3, …) reach more than ``PAIR_LIMIT`` steps together:
    ``max(max|w| / 127, max(|w[2j]| + |w[2j+1]|) / 128)``. Other dense layers (k×k convolutions, whose
    kernel order of input channels and taps we do not rely on) get 7 bits, as with ``"dense"``."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    pairs: dict[str, tuple[np.ndarray, int, int]] = {}
    overrides: dict[str, list] = {}
    for weight_name, axis in _dense_weights(model).items():
        weight = initializers[weight_name]
        node = next(n for n in model.graph.node if len(n.input) > 1 and n.input[1] == weight_name)
        pair_axis: int | None = None
        if node.op_type == "Conv" and all(d == 1 for d in weight.dims[2:]):
            pair_axis = 1
        elif node.op_type == "Gemm" or (node.op_type == "MatMul" and len(weight.dims) == 2):
            pair_axis = 1 - axis
        if pair_axis is None:
            overrides[weight_name] = [{"reduce_range": True, "axis": axis}]
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        rows = _pair_rows(np.abs(w), axis, pair_axis)
        widest = np.maximum(rows.max(axis=(1, 2)), rows.sum(axis=2).max(axis=1) * 127 / PAIR_LIMIT)
        overrides[weight_name] = [{"axis": axis, "rmin": -float(m), "rmax": float(m)} for m in widest]
        pairs[weight_name] = (w, axis, pair_axis)
    return pairs, overrides


def _pair_rows(w: np.ndarray, axis: int, pair_axis: int) -> np.ndarray:
    """``w`` as (output channels, pairs, 2) along ``pair_axis`` (an odd count padded with a zero)."""
    rows = np.moveaxis(w, (axis, pair_axis), (0, 1)).reshape(w.shape[axis], w.shape[pair_axis], -1)
    rows = np.moveaxis(rows, 2, 1).reshape(-1, w.shape[pair_axis])  # one row per (channel, rest)
    rows = rows.reshape(w.shape[axis], -1, w.shape[pair_axis])
    if rows.shape[2] % 2:
        rows = np.concatenate([rows, np.zeros_like(rows[..., :1])], axis=2)
    return rows.reshape(rows.shape[0], -1, 2)


def _fit_pairs(model: Any, pairs: Mapping[str, tuple[np.ndarray, int, int]]) -> int:
    """Where rounding took two neighbouring int8 weights of a ``"pairs"`` layer past ``PAIR_LIMIT``
    together (each rounds by up to half a step), move the one rounded further outward one step
    back (in place); returns how many pairs changed."""
    from onnx import numpy_helper
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

    initializers = {i.name: i for i in model.graph.initializer}
    changed = 0
    for name, (w, axis, pair_axis) in pairs.items():
        quantized, scale = (
            initializers.get(name + TENSOR_NAME_QUANT_SUFFIX),
            initializers.get(name + "_scale"),
        )
        if quantized is None or scale is None:
            continue
        q = numpy_helper.to_array(quantized)
        shape = [1] * w.ndim
        shape[axis] = -1
        exact = w / numpy_helper.to_array(scale).astype(np.float32).reshape(shape)
        q_rows = _pair_rows(q.astype(np.int32), axis, pair_axis)
        outward = np.abs(q_rows) - np.abs(_pair_rows(exact, axis, pair_axis))
        over = np.abs(q_rows).sum(axis=2) > PAIR_LIMIT
        if not over.any():
            continue
        pick = np.argmax(outward, axis=2)[..., None]
        step = np.take_along_axis(np.sign(q_rows), pick, axis=2) * over[..., None]
        np.put_along_axis(q_rows, pick, np.take_along_axis(q_rows, pick, axis=2) - step, axis=2)
        if np.abs(q_rows).sum(axis=2).max() > PAIR_LIMIT:
            raise ModelFormatError(f"{name}: int8 weights do not fit the pair limit")
        fixed = _unpair_rows(q_rows, q.shape, axis, pair_axis).astype(q.dtype)
        quantized.CopyFrom(numpy_helper.from_array(fixed, quantized.name))
        changed += int(over.sum())
    return changed


def _unpair_rows(rows: np.ndarray, shape: Sequence[int], axis: int, pair_axis: int) -> np.ndarray:
    """The inverse of :func:`_pair_rows`."""
    channels, inner = shape[axis], shape[pair_axis]
    rows = rows.reshape(channels, -1)
    rest = rows.shape[1] // (inner + inner % 2)
    rows = rows.reshape(channels, rest, inner + inner % 2)[..., :inner]
    moved = [s for i, s in enumerate(shape) if i not in (axis, pair_axis)]
    rows = np.moveaxis(rows, 2, 1).reshape(channels, inner, *moved)
    return np.moveaxis(rows, (0, 1), (axis, pair_axis))


def _unquantize_outputs(model: Any) -> int:
    """Drop the QuantizeLinear → DequantizeLinear pair in front of each graph output (in place), so
    the layer that computes an output writes it in float; returns how many outputs changed."""
    producers = {output: node for node in model.graph.node for output in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    changed = 0
    for output in model.graph.output:
        dequantize = producers.get(output.name)
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        quantize = producers.get(dequantize.input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear" or consumers[quantize.output[0]] != 1:
            continue
        source = quantize.input[0]
        for node in model.graph.node:  # the float tensor takes the output's name
            node.input[:] = [output.name if name == source else name for name in node.input]
            node.output[:] = [output.name if name == source else name for name in node.output]
        model.graph.node.remove(quantize)
        model.graph.node.remove(dequantize)
        changed += 1
    used = {name for node in model.graph.node for name in node.input}
    for initializer in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(initializer)  # the pairs' scales and zero points
    return changed


def _correct_biases(model: Any, quantized: Any, means: Mapping[str, np.ndarray]) -> int:
    """Subtract ``ΔW · E[x]`` from the bias of every ``Conv`` / ``Gemm`` of ``model`` (in place), with
    ``ΔW`` read back from the weights ``quantized`` (the same graph quantized) dequantizes; returns
    how many layers were corrected. Layers without a bias initializer are left as they are."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    q_arrays = {i.name: i for i in quantized.graph.initializer}
    producers = {output: node for node in quantized.graph.node for output in node.output}
    q_nodes = {node.name: node for node in quantized.graph.node}
    count = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[0] not in means:
            continue
        weight, bias = initializers.get(node.input[1]), initializers.get(node.input[2])
        q_node = q_nodes.get(node.name)
        dequantize = producers.get(q_node.input[1]) if q_node is not None else None
        if weight is None or bias is None or dequantize is None or dequantize.op_type != "DequantizeLinear":
            continue
        w = numpy_helper.to_array(weight).astype(np.float64)
        w_q = _dequantized(dequantize, q_arrays)
        if w_q is None or w_q.shape != w.shape:
            continue
        delta, mean = w_q - w, np.asarray(means[node.input[0]], np.float64)
        if node.op_type == "Gemm":
            delta = delta if _attribute(node, "transB", 0) else delta.T  # (outputs, inputs)
            if delta.shape[1] != mean.size:
                continue
            shift = delta @ mean
        else:  # (outputs, inputs per group, kernel...): each output sees its group's input channels
            groups = _attribute(node, "group", 1)
            per_group = delta.reshape(delta.shape[0], delta.shape[1], -1).sum(axis=2)
            if mean.size != groups * delta.shape[1]:
                continue
            group_of_output = np.arange(delta.shape[0]) // (delta.shape[0] // groups)
            shift = np.einsum("oi,oi->o", per_group, mean.reshape(groups, -1)[group_of_output])
        b = numpy_helper.to_array(bias).astype(np.float64)
        if b.shape != shift.shape:
            continue
        bias.CopyFrom(numpy_helper.from_array((b - shift).astype(np.float32), bias.name))
        count += 1
    return count


def _dequantized(node: Any, arrays: Mapping[str, Any]) -> np.ndarray | None:
    """The float64 values a ``DequantizeLinear`` of constant inputs produces (None if not constant)."""
    from onnx import numpy_helper

    if any(name and name not in arrays for name in node.input):
        return None
    values = numpy_helper.to_array(arrays[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(arrays[node.input[1]]).astype(np.float64)
    zero = (
        numpy_helper.to_array(arrays[node.input[2]]).astype(np.float64)
        if len(node.input) > 2 and node.input[2]
        else np.zeros_like(scale)
    )
    if scale.ndim == 1 and scale.size > 1:
        axis = _attribute(node, "axis", 1)
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


# -- both steps, for any model ----------------------------------------------------------------------
def quantize(
    model_dir: str | Path,
    calibration: str | Path | Iterable[Any],
    *,
    name: str | None = None,
    replace: bool = False,
    recursive: bool = True,
    quant_format: QuantFormat = "qdq",
    float_nodes: Sequence[str] | None = None,
) -> tuple[Path, ModelSpec]:
    """Calibrate the model in ``model_dir`` on images and save its int8 version in the cache as
    ``name`` (default: the model's name + ``_int8``); returns ``(directory, spec)``.

    ``calibration``: a folder of images (walked recursively unless ``recursive=False``), or an
    iterable of image sources. A hundred varied photos from the model's domain are plenty; the
    ranges are saved beside the model (``int8_ranges.json``). ``float_nodes``: names of nodes to
    keep in float (see :func:`quantize_model_dir`); by default, for a catalogue model with shipped
    ranges, the nodes its shipped int8 variant keeps in float (so recalibrating on your own photos
    keeps the float stem that makes the catalogue's int8 models agree with fp32), else none.
    """
    source_dir = Path(model_dir)
    source_spec = load_model_dir(source_dir)
    if float_nodes is None:
        float_nodes = default_float_nodes(source_spec.name)
    target_name = validate_model_name(name or int8_variant(source_spec.name))
    target = cached_model_dir(target_name)
    if target.exists() and not replace:
        raise ConfigError(
            f"a model named {target_name!r} already exists in {target}; choose another --name (or --force)"
        )
    if isinstance(calibration, (str, Path)):
        folder = Path(calibration)
        if not folder.is_dir():
            raise InputNotFoundError(f"calibration folder {folder} does not exist")
        images: Iterable[Any] = iter_image_files([folder], recursive=recursive)
        described = f"{folder.name}/"
    else:
        images, described = calibration, "images given in Python"
    ranges = collect_ranges(source_dir, images, calibration=described, float_nodes=float_nodes)
    spec = build_model_dir(
        target,
        lambda tmp: quantize_model_dir(source_dir, ranges, tmp, name=target_name, quant_format=quant_format),
        replace=replace,
    )
    return target, spec
