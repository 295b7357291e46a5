"""Writers that stream predictions out as a table, CSV, JSON, JSON Lines or Parquet.

Each writer takes predictions one at a time and keeps nothing but the current row group (Parquet),
so output files of any size are written with flat memory. JSON and JSONL records are
:meth:`Prediction.to_dict`; CSV and Parquet flatten the top-k into ``label_1``, ``score_1``, ...

File names that are not valid UTF-8, or hold line breaks and other control characters, survive in
every format: :mod:`sparkvision.names` gives the rule for each.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError
from .extras import require
from .names import display_text, dumps_json, escape_text
from .results import Prediction

__all__ = ["FORMATS", "PredictionWriter", "open_writer"]

FORMATS = ("table", "csv", "json", "jsonl", "parquet")


class PredictionWriter:
    """Base class: ``write(prediction)`` for each row, then ``close()``."""

    def __init__(self, stream: IO[str] | None, top_k: int) -> None:
        self.stream = stream
        self.top_k = top_k

    def write(self, prediction: Prediction) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TableWriter(PredictionWriter):
    """Aligned text for people: image | label | confidence (runners-up when top_k > 1)."""

    NAME_WIDTH = 36
    LABEL_WIDTH = 44

    def __init__(self, stream: IO[str], top_k: int) -> None:
        super().__init__(stream, top_k)
        self._header_done = False

    @staticmethod
    def _fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    @staticmethod
    def _fit_path(text: str, width: int) -> str:
        """Long paths lose their beginning: the file name is what people scan for."""
        return text if len(text) <= width else "…" + text[-(width - 1) :]

    def write(self, prediction: Prediction) -> None:
        assert self.stream is not None
        if not self._header_done:
            header = f"{'image':<{self.NAME_WIDTH}}  {'label':<{self.LABEL_WIDTH}}  {'confidence':>10}"
            if self.top_k > 1:
                header += "  runners-up"
            self.stream.write(header + "\n" + "-" * len(header) + "\n")
            self._header_done = True
        name = self._fit_path(display_text(prediction.path or f"<input {prediction.index}>"), self.NAME_WIDTH)
        if prediction.error is not None:
            self.stream.write(f"{name:<{self.NAME_WIDTH}}  ERROR: {display_text(prediction.error)}\n")
            return
        if not prediction.labels:
            self.stream.write(f"{name:<{self.NAME_WIDTH}}  (no label above the threshold)\n")
            return
        label = self._fit(display_text(prediction.labels[0]), self.LABEL_WIDTH)
        line = f"{name:<{self.NAME_WIDTH}}  {label:<{self.LABEL_WIDTH}}  {prediction.scores[0]:>9.1%}"
        if len(prediction.labels) > 1:
            others = ", ".join(
                f"{display_text(lab.split(',')[0])} {score:.1%}"
                for lab, score in zip(prediction.labels[1:], prediction.scores[1:])
            )
            line += f"  {others}"
        self.stream.write(line + "\n")


def _flat_record(prediction: Prediction, top_k: int) -> dict[str, Any]:
    record: dict[str, Any] = {"path": _escaped(prediction.path)}
    for rank in range(top_k):
        has = rank < len(prediction.labels)
        record[f"label_{rank + 1}"] = prediction.labels[rank] if has else None
        record[f"score_{rank + 1}"] = round(prediction.scores[rank], 6) if has else None
        record[f"class_id_{rank + 1}"] = prediction.class_ids[rank] if has else None
    record["error"] = _escaped(prediction.error)
    return record


def _escaped(text: str | None) -> str | None:
    return None if text is None else escape_text(text)


class CsvWriter(PredictionWriter):
    """CSV with ``\n`` line ends; a field holding a line break is quoted (see :mod:`sparkvision.names`)."""

    def __init__(self, stream: IO[str], top_k: int) -> None:
        super().__init__(stream, top_k)
        columns = list(_flat_record(Prediction(path=None), top_k))
        self._csv = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
        # The csv module quotes "\n" (it is the line terminator) but not a lone "\r", which readers
        # also take for a line end: rows holding one are written with every field quoted.
        self._quoted = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._csv.writeheader()

    def write(self, prediction: Prediction) -> None:
        record = _flat_record(prediction, self.top_k)
        has_cr = any(isinstance(value, str) and "\r" in value for value in record.values())
        (self._quoted if has_cr else self._csv).writerow(record)


class JsonLinesWriter(PredictionWriter):
    def write(self, prediction: Prediction) -> None:
        assert self.stream is not None
        self.stream.write(dumps_json(prediction.to_dict()) + "\n")


class JsonWriter(PredictionWriter):
    """A JSON array, written incrementally."""

    def __init__(self, stream: IO[str], top_k: int) -> None:
        super().__init__(stream, top_k)
        self._count = 0

    def write(self, prediction: Prediction) -> None:
        assert self.stream is not None
        self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + dumps_json(prediction.to_dict()))
        self._count += 1

    def close(self) -> None:
        assert self.stream is not None
        self.stream.write("[]\n" if self._count == 0 else "\n]\n")
        super().close()


class ParquetWriter(PredictionWriter):
    """Parquet with list columns (``labels``, ``scores``, ``class_ids``), in row groups of 4096."""

    ROW_GROUP = 4096

    def __init__(self, path: Path, top_k: int) -> None:
        super().__init__(None, top_k)
        pa = require("pyarrow", extra="parquet", purpose="Parquet output")
        pq = require("pyarrow.parquet", extra="parquet", purpose="Parquet output")

        self._pa = pa
        self._schema = pa.schema(
            [
                ("path", pa.string()),
                ("labels", pa.list_(pa.string())),
                ("scores", pa.list_(pa.float32())),
                ("class_ids", pa.list_(pa.int32())),
                ("error", pa.string()),
            ]
        )
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._rows: list[dict[str, Any]] = []

    def write(self, prediction: Prediction) -> None:
        record = prediction.to_dict()
        record.pop("embedding", None)
        record["path"], record["error"] = _escaped(record["path"]), _escaped(record["error"])
        self._rows.append(record)
        if len(self._rows) >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self._pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def open_writer(
    fmt: str, output: str | Path | None, top_k: int, stream: IO[str] | None = None
) -> PredictionWriter:
    """A writer for ``fmt`` into the file ``output`` (or ``stream``, default stdout)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise ConfigError("parquet output needs a file: add --output FILE.parquet")
        return ParquetWriter(Path(output), top_k)
    if output is not None:
        handle: IO[str] = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by writer
        writer = _TEXT_WRITERS[fmt](handle, top_k)
        original_close = writer.close

        def close() -> None:
            original_close()
            handle.close()

        writer.close = close  # type: ignore[method-assign]
        return writer
    return _TEXT_WRITERS[fmt](stream or sys.stdout, top_k)


_TEXT_WRITERS: dict[str, type[PredictionWriter]] = {
    "table": TableWriter,
    "csv": CsvWriter,
    "json": JsonWriter,
    "jsonl": JsonLinesWriter,
}
