"""The inference engine: one ONNX Runtime session per model per process, reused.

Creating a session costs tens to hundreds of milliseconds and a model's worth of memory, so sessions
are cached process-wide (:func:`get_engine`) — the CLI, the Python API, the web service and Spark's
Python workers all share this cache. ORT releases the GIL while it runs, so decoding threads keep
working during inference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelFormatError

__all__ = ["Engine", "default_threads", "get_engine"]


def default_threads() -> int:
    """Physical cores available to this process (hyper-threads don't speed up ORT's convolutions)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return max(1, len(cores))


class Engine:
    """An ONNX Runtime session over one ``model.onnx``, created lazily on first use."""

    def __init__(self, model_file: str | Path, threads: int | None = None) -> None:
        self.model_file = Path(model_file)
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):  # onnxruntime.InferenceSession; untyped to keep the import lazy
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    def _create_session(self):
        import onnxruntime as ort

        threads = self.threads or default_threads()
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # ORT's worker threads busy-wait between runs by default. Our decode threads (and a server's
        # event loop) need those cycles between batches: measured, no spinning halves CPU per image
        # under load. SPARKVISION_ORT_SPIN=1 restores ORT's default.
        spin = "1" if os.environ.get("SPARKVISION_ORT_SPIN") == "1" else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        try:
            return ort.InferenceSession(
                str(self.model_file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors for a damaged file
            raise ModelFormatError(
                f"{self.model_file} cannot be loaded by ONNX Runtime ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); delete "
                f"{self.model_file.parent} and build or import the model again"
            ) from exc

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.session.get_outputs())

    def run(self, inputs: np.ndarray | dict[str, np.ndarray], outputs: Sequence[str] = ("logits",)):
        """Run the network; ``inputs`` is the pixel batch or a name → array mapping."""
        feeds = inputs if isinstance(inputs, dict) else {self.input_name: inputs}
        return self.session.run(list(outputs), feeds)


_ENGINES: dict[tuple[str, int, int, int | None], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(model_file: str | Path, threads: int | None = None) -> Engine:
    """The process-wide engine for this model file (rebuilt if the file changed on disk)."""
    path = Path(model_file).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelFormatError(f"{path} is missing: {exc.strerror}") from exc
    key = (str(path), stat.st_mtime_ns, stat.st_size, threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            for old in [k for k in _ENGINES if k[0] == key[0] and k[1:3] != key[1:3]]:
                del _ENGINES[old]
            engine = _ENGINES[key] = Engine(path, threads)
        return engine


def forget_engines() -> None:
    """Drop every cached session (tests, or to free memory)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()
