"""What every importer shares: safe weight loading, weight hashes, labels, and the ONNX export + check.

Importing is the only place sparkvision touches torch; these helpers import it lazily so that the rest
of the package (and ``sparkvision --help``) works without the ``import`` extra installed.

Weights are loaded without running code: safetensors first, and ``.bin``/``.pth``/``.pt`` only through
``torch.load(weights_only=True)``, whose restricted unpickler refuses anything but tensors and plain
containers. A pickle that names other code is a :class:`~sparkvision.errors.ModelImportError`.

Every exported graph is checked before it is accepted: ONNX Runtime runs it at two batch sizes on the
example input and must agree with the torch module (so a batch dimension that the exporter froze, or a
family the exporter gets wrong, fails the import instead of giving wrong answers later).
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, MissingExtraError, ModelImportError
from ..extras import install_hint
from ..labels import imagenet1k_labels, imagenet1k_synsets

if TYPE_CHECKING:
    import torch

__all__ = [
    "ONNX_OPSET",
    "export_onnx",
    "fallback_labels",
    "imagenet_synsets_for",
    "load_state_dict",
    "read_labels_file",
    "require",
    "sha256_files",
]

log = logging.getLogger(__name__)

#: Opset of the graphs we export: supported by every onnxruntime >= 1.17 that sparkvision accepts.
ONNX_OPSET = 17
#: Largest |Δ| (relative to the output's scale) between torch and ONNX Runtime that an export may show.
EXPORT_TOLERANCE = 1e-4
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
_NESTED_KEYS = ("state_dict", "model_state_dict", "state_dict_ema", "model", "module")


def require(module: str, what: str) -> Any:
    """Import an optional dependency of the importers, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs the Python package {module!r} ({exc}); install the import extra: "
            f"{install_hint('import')}",
            extra="import",
        ) from exc


def save_tokenizer_json(checkpoint: Path, target: Path, what: str, needs: str) -> Any:
    """Load a checkpoint's tokenizer with transformers and save its fast backend as ``target``
    (a ``tokenizer.json`` that the ``tokenizers`` package runs without transformers); returns the
    transformers tokenizer. ``what`` names the checkpoint kind, ``needs`` the files it must have."""
    transformers = require("transformers", f"importing {what}")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    except Exception as exc:
        raise ModelImportError(
            f"{checkpoint}: the tokenizer cannot be loaded ({exc}); {what} needs {needs} beside config.json"
        ) from exc
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelImportError(f"{checkpoint}: the tokenizer has no tokenizers backend to save")
    backend.save(str(target))
    return tokenizer


def sha256_files(paths: Iterable[Path]) -> str:
    """SHA-256 of one weights file, or of several (shards) read in name order as one stream."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file into ``{name: tensor}`` without running any code from it.

    ``.safetensors`` is read with safetensors; ``.bin``/``.pth``/``.pt``/``.ckpt`` with
    ``torch.load(weights_only=True)``. Training checkpoints that nest the weights under
    ``state_dict``/``model``/``state_dict_ema`` are unwrapped, and a ``module.`` prefix (DataParallel)
    is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"weights file {path} does not exist")
    torch = require("torch", "importing a checkpoint")
    if path.suffix == ".safetensors":
        safetensors_torch = require("safetensors.torch", "reading .safetensors weights")
        try:
            state = safetensors_torch.load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelImportError(f"{path} is not a valid safetensors file: {exc}") from exc
    elif path.suffix in _PICKLE_SUFFIXES:
        state = _torch_load_weights_only(torch, path)
    else:
        raise ModelImportError(
            f"{path}: unknown weights format {path.suffix!r}; use .safetensors (preferred), .bin, .pth or .pt"
        )
    state = _unwrap(state, path)
    return {key.removeprefix("module."): value for key, value in state.items()}


def _torch_load_weights_only(torch: Any, path: Path) -> Any:
    import pickle

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next(
            (line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else ""
        )
        raise ModelImportError(
            f"{path} is not a plain weights file: its pickle refers to code that sparkvision will not run "
            f"({detail.strip()}). Only tensors are accepted; re-save the weights with "
            f"safetensors (safetensors.torch.save_file(model.state_dict(), 'model.safetensors'))"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelImportError(f"{path} cannot be read as a torch weights file: {exc}") from exc


def _unwrap(state: Any, path: Path) -> Mapping[str, Any]:
    """Dig the ``{name: tensor}`` mapping out of a checkpoint, whatever it was saved under."""
    torch = require("torch", "importing a checkpoint")
    for _ in range(3):
        if isinstance(state, Mapping) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        if isinstance(state, Mapping):
            nested = next((state[k] for k in _NESTED_KEYS if isinstance(state.get(k), Mapping)), None)
            if nested is not None:
                state = nested
                continue
            tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
            if tensors:
                return tensors
        break
    raise ModelImportError(
        f"{path} holds no weights (expected a mapping of parameter names to tensors, got {type(state).__name__})"
    )


# -- labels -------------------------------------------------------------------------------------------
def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """Labels from a text file, one per line in output order (blank lines at the end are ignored).

    A ``.json`` file may hold a list, or an ``{"0": "label", ...}`` mapping (Hugging Face's id2label).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".json":
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict):
            data = labels_from_mapping(data, str(path))
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ConfigError(f"{path} must hold a list of label strings or an id → label mapping")
        labels = tuple(data)
    else:
        labels = tuple(line.strip() for line in text.rstrip("\n").split("\n"))
    if not labels or any(not label for label in labels):
        raise ConfigError(f"{path} has empty labels: write one non-empty label per line")
    return labels


def labels_from_mapping(id2label: Mapping[Any, str], where: str) -> list[str]:
    """``{0: "cat", 1: "dog"}`` (keys may be strings) → ``["cat", "dog"]``; ids must be 0..n-1."""
    try:
        items = sorted((int(k), str(v)) for k, v in id2label.items())
    except (TypeError, ValueError) as exc:
        raise ModelImportError(f"{where}: label ids must be integers ({exc})") from exc
    if [i for i, _ in items] != list(range(len(items))):
        raise ModelImportError(f"{where}: label ids must be 0..{len(items) - 1} without gaps")
    return [label for _, label in items]


_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def fallback_labels(count: int, where: str) -> tuple[str, ...]:
    """``LABEL_0 … LABEL_{n-1}``, with a warning that the checkpoint has no class names."""
    message = (
        f"{where} has no class names; using LABEL_0 … LABEL_{count - 1}. "
        f"Pass a labels file (sparkvision import … --labels labels.txt) to name them."
    )
    log.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)
    return tuple(f"LABEL_{i}" for i in range(count))


def are_placeholder_labels(labels: Sequence[str]) -> bool:
    return all(_DEFAULT_LABEL.match(label) for label in labels)


def imagenet_synsets_for(labels: Sequence[str]) -> tuple[str, ...] | None:
    """The ImageNet-1k synset ids when ``labels`` are the ImageNet-1k classes in the standard order.

    Checkpoints spell the classes slightly differently (``"tench, Tinca tinca"`` vs ``"tench"``), so
    a label matches when its first lemma equals ours; 98 % of matches are required.
    """
    if len(labels) != 1000:
        return None
    ours = imagenet1k_labels()

    def first(label: str) -> str:
        return label.split(",")[0].strip().lower().replace("_", " ")

    matches = sum(first(a) == first(b) for a, b in zip(labels, ours))
    return imagenet1k_synsets() if matches >= 980 else None


def check_label_count(labels: Sequence[str], outputs: int, where: str) -> None:
    if len(labels) != outputs:
        raise ModelImportError(
            f"{where}: {len(labels)} labels for a model with {outputs} outputs; give exactly one label per output"
        )


# -- ONNX export ---------------------------------------------------------------------------------------
def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    input_name: str = "pixel_values",
    output_names: Sequence[str] = ("logits",),
    check_batch: torch.Tensor | None = None,
) -> None:
    """Export ``module(example)`` to ``path`` with a dynamic batch dimension, and check the result.

    Uses torch's TorchScript-based exporter: on the Hugging Face and timm families we import it is
    the one that keeps the batch dimension dynamic (the dynamo exporter fails on Swin with a dynamic
    batch and is ~10× slower); the dynamo exporter (needs onnxscript) is tried only if it fails. The
    graph must then agree with the module on ``example`` and on ``check_batch`` (another batch size).
    """
    torch = require("torch", "exporting to ONNX")
    module = module.eval()
    dynamic = {input_name: {0: "batch"}, **{name: {0: "batch"} for name in output_names}}
    errors: list[str] = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[input_name],
                output_names=list(output_names),
                dynamic_axes=dynamic,
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:
            errors.append(f"TorchScript exporter: {exc.__class__.__name__}: {_first_line(exc)}")
            _export_dynamo(torch, module, example, path, input_name, output_names, errors)
    _consolidate(path)
    batches = [example] + ([check_batch] if check_batch is not None else [])
    verify_onnx(module, path, batches, input_name=input_name, output_names=output_names)


def _export_dynamo(
    torch: Any,
    module: Any,
    example: Any,
    path: Path,
    input_name: str,
    output_names: Sequence[str],
    errors: list[str],
) -> None:
    try:
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=18,
            dynamo=True,
        )
    except Exception as exc:
        errors.append(f"dynamo exporter: {exc.__class__.__name__}: {_first_line(exc)}")
        raise ModelImportError("the model cannot be exported to ONNX: " + "; ".join(errors)) from exc


def _consolidate(path: Path) -> None:
    """Keep one self-contained ``model.onnx`` (no stray external-data files) when it fits in 2 GB."""
    onnx = require("onnx", "importing a model")

    external = [p for p in path.parent.iterdir() if p != path and p.name.startswith(path.name)]
    if not external:
        return
    model = onnx.load(str(path), load_external_data=True)
    if model.ByteSize() < 2**31 - 1:
        onnx.save(model, str(path))
        for extra in external:
            extra.unlink()


def verify_onnx(
    module: Any,
    path: Path,
    batches: Sequence[Any],
    *,
    input_name: str = "pixel_values",
    output_names: Sequence[str] = ("logits",),
) -> None:
    """Run ``path`` with ONNX Runtime and ``module`` with torch on each batch; they must agree."""
    import onnxruntime as ort

    torch = require("torch", "checking an ONNX export")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelImportError(
            f"the exported graph does not load in ONNX Runtime: {_first_line(exc)}"
        ) from exc
    for batch in batches:
        with torch.no_grad():
            expected = module(batch)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        try:
            got = session.run(list(output_names), {input_name: batch.numpy()})
        except Exception as exc:
            raise ModelImportError(
                f"the exported graph fails on a batch of {batch.shape[0]} (is its batch size fixed?): "
                f"{_first_line(exc)}"
            ) from exc
        for name, want, have in zip(output_names, expected, got):
            want = want.detach().float().numpy()
            if want.shape != have.shape:
                raise ModelImportError(
                    f"the exported graph's {name!r} has shape {have.shape} for a batch of "
                    f"{batch.shape[0]}, torch gives {want.shape}"
                )
            scale = max(1.0, float(np.abs(want).max()))
            delta = float(np.abs(want - have).max())
            if not delta <= EXPORT_TOLERANCE * scale:
                raise ModelImportError(
                    f"the exported graph disagrees with the torch model on {name!r} (max |Δ| {delta:.3g} "
                    f"for a batch of {batch.shape[0]}); this architecture does not export correctly"
                )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def random_batch(size: int, count: int, seed: int = 0) -> Any:
    """A reproducible float32 batch in the range of normalised pixels, for export and checks."""
    torch = require("torch", "exporting to ONNX")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, size, size, generator=generator)


def call_with_head_input(
    model: Any, head: Any, run: Callable[[], Any], flatten: bool = True
) -> tuple[Any, Any]:
    """Run ``run()`` and capture the tensor entering ``head`` (the penultimate features)."""
    captured: list[Any] = []

    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        captured.append(args[0])

    handle = head.register_forward_pre_hook(hook)
    try:
        out = run()
    finally:
        handle.remove()
    if not captured:
        raise ModelImportError(f"{type(model).__name__}: its classifier head was never called")
    features = captured[0]
    if flatten and features.dim() > 2:
        features = features.flatten(1)
    return out, features
