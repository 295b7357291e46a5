"""``sparkvision caption``: captions for image files and folders, with a captioning model.

One record per image, in input order: ``{"path", "captions": [...best first], "error"}``, written as a
table (path and best caption), CSV, JSON, JSON Lines or Parquet. Generation options are transformers'
``generate()`` ones; those not given keep the model's own defaults (its ``generation_config.json``).
Per-image failures (a missing or unreadable file) are rows with an error, counted in the closing summary;
they fail the run only with ``--strict``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from .options import (
    batch_size_option,
    format_option,
    model_option,
    output_option,
    quiet_option,
    recursive_option,
    strict_option,
    threads_option,
)
from .progress import Tally, check_folders, summary_line

__all__ = ["FORMATS", "caption", "register"]

FORMATS = ("table", "csv", "json", "jsonl", "parquet")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@model_option(default="image_captioning_vit_gpt2", help="Captioning model: a name or a model directory.")
@format_option(
    FORMATS, default="table", help="table: path and best caption; csv, json, jsonl; parquet (needs --output)."
)
@output_option()
@recursive_option()
@batch_size_option()
@threads_option()
@click.option("--max-length", type=int, default=None, help="Longest caption in tokens, start token included.")
@click.option("--max-new-tokens", type=int, default=None, help="Longest caption in generated tokens.")
@click.option(
    "--min-length", type=int, default=None, help="Shortest caption in tokens, start token included."
)
@click.option("--beams", "num_beams", type=int, default=None, help="Beam search with this many beams.")
@click.option("--sample/--no-sample", "do_sample", default=None, help="Sample instead of searching.")
@click.option("--top-k", type=int, default=None, help="Sampling: keep the k most likely tokens.")
@click.option(
    "--top-p", type=float, default=None, help="Sampling: keep the most likely tokens up to this mass."
)
@click.option("--temperature", type=float, default=None, help="Sampling: divide the logits by this.")
@click.option("--seed", type=int, default=None, help="Sampling: the same seed gives the same captions.")
@click.option("--repetition-penalty", type=float, default=None, help="Penalise tokens already generated.")
@click.option("--no-repeat-ngram-size", type=int, default=None, help="Never repeat an n-gram of this size.")
@click.option("-n", "--num-captions", "num_return_sequences", type=int, default=None,
              help="Captions per image (beam search or sampling).")  # fmt: skip
@strict_option()
@quiet_option()
def caption(
    paths: tuple[str, ...],
    model: str,
    fmt: str,
    output: str | None,
    recursive: bool,
    batch_size: int | None,
    threads: int | None,
    strict: bool,
    quiet: bool,
    **generation: Any,
) -> None:
    """Caption images: files, folders (image files inside), or both."""
    from ..tasks.captioning import Captioner

    check_folders(paths, recursive=recursive)
    captioner = Captioner.pretrained(model, threads=threads)
    captioner.generation_config(**generation)  # bad options fail before any image is read
    counts = Tally()
    with _writer(fmt, output) as write:
        results = captioner.caption(list(paths), batch_size=batch_size, recursive=recursive, **generation)
        for result in _tally(results, counts):
            write(result.to_dict())
    if not quiet:
        click.echo(summary_line(counts, verb="captioned", model=captioner.spec.name, output=output), err=True)
    if strict and counts.failed:
        sys.exit(1)


def _tally(results: Iterator[Any], counts: Tally) -> Iterator[Any]:
    import time

    started = time.perf_counter()
    try:
        for result in results:
            counts.done += 1
            counts.failed += result.error is not None
            yield result
    finally:
        counts.seconds += time.perf_counter() - started


@contextmanager
def _writer(fmt: str, output: str | None) -> Iterator[Any]:
    """A ``write(record)`` function for ``fmt``, writing to ``output`` (or stdout)."""
    if fmt == "parquet":
        if output is None:
            raise click.UsageError("--format parquet needs --output FILE")
        from ..extras import require

        pa = require("pyarrow", extra="parquet", purpose="Parquet output")  # before any work
        pq = require("pyarrow.parquet", extra="parquet", purpose="Parquet output")
        records: list[dict[str, Any]] = []
        yield records.append
        schema = pa.schema(
            [("path", pa.string()), ("captions", pa.list_(pa.string())), ("error", pa.string())]
        )
        pq.write_table(pa.Table.from_pylist(records, schema=schema), output)
        return
    stream: IO[str] = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "jsonl":
            yield lambda record: stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif fmt == "json":
            records = []
            yield records.append
            stream.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        elif fmt == "csv":
            rows = csv.writer(stream)
            rows.writerow(["path", "caption", "captions", "error"])
            yield lambda r: rows.writerow(
                [
                    r["path"] or "",
                    (r["captions"] or [""])[0],
                    json.dumps(r["captions"], ensure_ascii=False),
                    r["error"] or "",
                ]
            )
        else:

            def row(record: dict[str, Any]) -> None:
                text = record["captions"][0] if record["captions"] else f"error: {record['error']}"
                stream.write(f"{record['path'] or '-'}\t{text}\n")

            yield row
    finally:
        if output:
            stream.close()
        else:
            stream.flush()


def register(group: click.Group) -> None:
    group.add_command(caption)
