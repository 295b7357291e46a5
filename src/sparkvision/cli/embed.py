"""``sparkvision embed``: image embeddings as JSON Lines, npz or Parquet (writers in
:mod:`sparkvision.embedding_outputs`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..embedding_outputs import EMBED_FORMATS
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

__all__ = ["embed_command", "register"]


def register(group: click.Group) -> None:
    group.add_command(embed_command)


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@model_option()
@format_option(EMBED_FORMATS, default="jsonl",
               help="jsonl: one JSON object per image; npz: arrays embeddings/paths/errors; parquet: a table.")  # fmt: skip
@output_option()
@recursive_option()
@batch_size_option()
@threads_option()
@strict_option()
@quiet_option()
def embed_command(
    paths: tuple[str, ...],
    model: str,
    fmt: str,
    output: str | None,
    recursive: bool,
    batch_size: int | None,
    threads: int | None,
    strict: bool,
    quiet: bool,
) -> None:
    """Image embeddings (the features before the classifier, or CLIP's image embeddings).

    A failed image keeps its row, with an error and no embedding (NaNs in npz).
    """
    from .. import Classifier
    from ..embedding_outputs import write_embeddings
    from ..errors import ConfigError, InputNotFoundError

    if fmt != "jsonl" and output is None:
        raise ConfigError(f"--format {fmt} writes a binary file: give --output FILE")
    for raw in paths:
        if not Path(raw).exists():
            raise InputNotFoundError(f"{raw}: no such file or directory")
    classifier = Classifier.pretrained(model, threads=threads)
    if not classifier.spec.has_embeddings:
        raise ConfigError(f"model {classifier.spec.name!r} does not export image embeddings")
    started = time.perf_counter()
    counts = [0, 0]

    def counted(predictions):  # type: ignore[no-untyped-def]
        for prediction in predictions:
            counts[0] += 1
            counts[1] += prediction.error is not None
            yield prediction

    write_embeddings(
        counted(classifier.embed(list(paths), batch_size=batch_size, recursive=recursive)), fmt, output
    )
    done, failed = counts
    if not quiet:
        elapsed = time.perf_counter() - started
        click.echo(
            f"{done} images: {done - failed} embedded, {failed} failed in {elapsed:.1f} s "
            f"(model {classifier.spec.name})" + (f"; wrote {output}" if output else ""),
            err=True,
        )
    if strict and failed:
        sys.exit(1)
