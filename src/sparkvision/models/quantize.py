"""int8 models: ONNX Runtime static quantization from an fp32 model directory plus activation ranges.

Static quantization needs, besides the weights, the range each activation tensor takes on real
images (its "calibration"). We split the two steps so that users never need calibration images for
the catalogue models:

1. :func:`collect_ranges` runs the fp32 model over calibration images and records each activation's
   min/max (ONNX Runtime's MinMax calibrator). For ``efficientnet_lite{0,1,2}`` this ran once, in
   ``scripts/calibrate_int8.py``, and its result ships in the package as a few kilobytes of JSON
   (``sparkvision/data/int8/<model>.json``);
2. :func:`quantize_model_dir` builds the int8 ``model.onnx`` from the fp32 one and those ranges —
   offline, in about a second, on the user's machine (the catalogue's ``*_int8`` entries do this on
   first use).

:func:`quantize` does both for any model (imported ones too): ``sparkvision quantize MODEL
--calibration DIR --name NAME``.

The scheme: uint8 activations (asymmetric, per tensor), int8 weights per output channel (symmetric),
QDQ format, full 8-bit weights. Why:

* u8 activations / s8 weights is what ONNX Runtime's documentation recommends for x86-64 CPUs, with
  and without VNNI; its int8 kernels use VNNI (``VPDPBUSD``) where the CPU has it and
  ``VPMADDUBSW`` on AVX2-only CPUs.
* per-channel weights: EfficientNet-Lite's depthwise convolutions (batch norm folded in) have very
  different ranges per channel; one scale per tensor loses accuracy.
* no ``reduce_range``: ONNX Runtime documents 7-bit weights as a remedy for ``VPMADDUBSW``
  saturation on CPUs without VNNI, if an accuracy drop shows there. Here 7-bit weights cost
  agreement with the fp32 model (top-1 agreement on the benchmark photos 0.85 instead of 0.92;
  ``benchmarks/int8_formats.py``), so the full range is the default; ``reduce_range=True`` is the
  remedy to try if a model loses accuracy on an AVX2-only machine (not measured: none here).
* QDQ rather than QOperator: ONNX Runtime documents QDQ as the preferred format for its CPU
  provider (its int8 kernels are fused from the QDQ pattern). Both gave the same top-1 on every
  photo here and the same speed within the noise of paired runs (``benchmarks/int8_formats.py``);
  the issue's quiet probe found the same (810-818 img/s, model only).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
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
    "collect_ranges",
    "int8_variant",
    "is_int8",
    "quantize",
    "quantize_model_dir",
    "shipped_ranges",
]

log = logging.getLogger(__name__)

#: Catalogue names of int8 variants: ``efficientnet_lite0`` → ``efficientnet_lite0_int8``.
INT8_SUFFIX = "_int8"
RANGES_FORMAT_VERSION = 1
#: Where a quantized model directory keeps the ranges it was built from (provenance, rebuilds).
RANGES_FILE = "int8_ranges.json"

QuantFormat = Literal["qdq", "qoperator"]


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
    """

    model: str
    weights_sha256: str | None
    ranges: dict[str, tuple[float, float]]
    images: int
    calibration: str = ""
    method: str = "minmax"
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActivationRanges:
        if data.get("format_version") != RANGES_FORMAT_VERSION:
            raise ModelFormatError(
                f"activation ranges format {data.get('format_version')!r} is not supported "
                f"(this sparkvision reads version {RANGES_FORMAT_VERSION})"
            )
        try:
            ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
            return cls(
                model=str(data["model"]),
                weights_sha256=data.get("weights_sha256"),
                ranges=ranges,
                images=int(data["images"]),
                calibration=str(data.get("calibration", "")),
                method=str(data.get("method", "minmax")),
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


# -- names ------------------------------------------------------------------------------------------
def is_int8(spec: ModelSpec) -> bool:
    """Whether a model directory holds a quantized (int8) model."""
    return spec.extra.get("precision") == "int8"


def int8_variant(name: str) -> str:
    """The catalogue name of a model's int8 variant (``x`` → ``x_int8``; an int8 name stays)."""
    return name if name.endswith(INT8_SUFFIX) else name + INT8_SUFFIX


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


def collect_ranges(
    model_dir: str | Path,
    images: Iterable[Any],
    *,
    calibration: str = "",
    batch_size: int = 8,
) -> ActivationRanges:
    """Run the fp32 model in ``model_dir`` over ``images`` and record every activation's min/max.

    Uses ONNX Runtime's MinMax calibrator, the default of ``quantize_static``.
    """
    require("onnx", extra="int8", purpose="calibrating a model for int8")
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    model_dir = Path(model_dir)
    spec = load_model_dir(model_dir)
    if is_int8(spec):
        raise ConfigError(f"{spec.name!r} is already an int8 model: calibrate its fp32 original")
    batches = list(calibration_batches(images, spec, batch_size=batch_size))
    count = sum(len(b) for b in batches)
    if count == 0:
        raise InputNotFoundError("no readable calibration images")
    input_name = _input_name(model_dir / MODEL_FILE)

    class _Reader:
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory(prefix="sparkvision-calibrate-") as tmp:
        calibrator = create_calibrator(
            model_dir / MODEL_FILE,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(_Reader())
        data = calibrator.compute_data()
        del calibrator
    ranges = {
        name: (float(np.min(value.range_value[0])), float(np.max(value.range_value[1])))
        for name, value in data.items()
    }
    return ActivationRanges(
        model=spec.name,
        weights_sha256=spec.weights_sha256,
        ranges=ranges,
        images=count,
        calibration=calibration,
    )


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
    reduce_range: bool = False,
    exclude: Sequence[str] = (),
) -> ModelSpec:
    """Write the int8 version of the fp32 model in ``source_dir`` into ``target_dir``.

    ``target_dir`` receives ``model.onnx`` and the ranges used (``int8_ranges.json``); the returned
    spec (the fp32 one renamed, with ``extra["precision"] = "int8"`` and the scheme) is for the
    caller to save — :func:`~sparkvision.models.store.build_model_dir` does. Needs no images.
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
    args = (model, True, reduce_range)
    types = (QuantType.QInt8, QuantType.QUInt8, tensors, [], list(exclude), op_types, {})
    if quant_format == "qdq":
        quantizer: Any = QDQQuantizer(*args, *types)
    else:
        quantizer = ONNXQuantizer(*args, QuantizationMode.QLinearOps, True, *types)
    quantizer.quantize_model()
    target_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(quantizer.model.model, str(target_dir / MODEL_FILE))
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
                "weights": "int8, per channel" + (", 7-bit range" if reduce_range else ""),
                "calibration": ranges.calibration,
                "calibration_images": ranges.images,
            },
        },
    )


# -- both steps, for any model ----------------------------------------------------------------------
def quantize(
    model_dir: str | Path,
    calibration: str | Path | Iterable[Any],
    *,
    name: str | None = None,
    replace: bool = False,
    recursive: bool = True,
    quant_format: QuantFormat = "qdq",
) -> tuple[Path, ModelSpec]:
    """Calibrate the model in ``model_dir`` on images and save its int8 version in the cache as
    ``name`` (default: the model's name + ``_int8``); returns ``(directory, spec)``.

    ``calibration``: a folder of images (walked recursively unless ``recursive=False``), or an
    iterable of image sources. A hundred varied photos from the model's domain are plenty; the
    ranges are saved beside the model (``int8_ranges.json``).
    """
    source_dir = Path(model_dir)
    source_spec = load_model_dir(source_dir)
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
    ranges = collect_ranges(source_dir, images, calibration=described)
    spec = build_model_dir(
        target,
        lambda tmp: quantize_model_dir(source_dir, ranges, tmp, name=target_name, quant_format=quant_format),
        replace=replace,
    )
    return target, spec
