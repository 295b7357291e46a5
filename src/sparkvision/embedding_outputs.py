"""Writers for image embeddings (``sparkvision embed``): JSON Lines, NumPy ``.npz`` or Parquet.

Every input keeps its row, in input order: a failed image has an ``error`` and no embedding (``null``
in JSON Lines and Parquet, a row of NaNs in the npz ``embeddings`` array). File names that are not
UTF-8 survive as :mod:`sparkvision.names` describes (npz keeps the Python strings themselves).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError
from .names import dumps_json, escape_text
from .results import Prediction

__all__ = ["EMBED_FORMATS", "write_embeddings"]

#: ``jsonl`` streams one object per image; ``npz`` and ``parquet`` write one file at the end.
EMBED_FORMATS = ("jsonl", "npz", "parquet")


def _record(prediction: Prediction) -> dict[str, Any]:
    return {
        "path": prediction.path,
        "embedding": None if prediction.embedding is None else [float(v) for v in prediction.embedding],
        "error": prediction.error,
    }


def write_embeddings(
    predictions: Iterable[Prediction], fmt: str, output: str | Path | None, stream: IO[str] | None = None
) -> None:
    """Write ``predictions`` (with embeddings) as ``fmt`` into the file ``output``, or ``stream``
    (JSON Lines only; default stdout)."""
    if fmt not in EMBED_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(EMBED_FORMATS)}")
    if fmt == "jsonl":
        _write_jsonl(predictions, output, stream)
        return
    if output is None:
        raise ConfigError(f"--format {fmt} writes a binary file: give --output FILE")
    rows = list(predictions)
    if fmt == "npz":
        _write_npz(rows, Path(output))
    else:
        _write_parquet(rows, Path(output))


def _write_jsonl(
    predictions: Iterable[Prediction], output: str | Path | None, stream: IO[str] | None
) -> None:
    import sys

    handle: IO[str] = open(output, "w", encoding="utf-8") if output else (stream or sys.stdout)  # noqa: SIM115
    try:
        for prediction in predictions:
            handle.write(dumps_json(_record(prediction)) + "\n")
    finally:
        if output:
            handle.close()
        else:
            handle.flush()


def _matrix(rows: list[Prediction]) -> Any:
    import numpy as np

    width = next((len(p.embedding) for p in rows if p.embedding is not None), 0)
    matrix = np.full((len(rows), width), np.nan, dtype=np.float32)
    for i, prediction in enumerate(rows):
        if prediction.embedding is not None:
            matrix[i] = prediction.embedding
    return matrix


def _write_npz(rows: list[Prediction], output: Path) -> None:
    import numpy as np

    paths = [p.path or "" for p in rows]
    errors = [p.error or "" for p in rows]
    with open(output, "wb") as handle:
        np.savez(handle, embeddings=_matrix(rows), paths=np.array(paths), errors=np.array(errors))


def _write_parquet(rows: list[Prediction], output: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    embeddings = [None if p.embedding is None else np.asarray(p.embedding, dtype=np.float32) for p in rows]
    table = pa.table(
        {
            "path": pa.array([None if p.path is None else escape_text(p.path) for p in rows], pa.string()),
            "embedding": pa.array(embeddings, pa.list_(pa.float32())),
            "error": pa.array([None if p.error is None else escape_text(p.error) for p in rows], pa.string()),
        }
    )
    pq.write_table(table, output)
