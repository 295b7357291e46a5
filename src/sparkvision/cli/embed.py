"""``sparkvision embed``: image embeddings as JSON Lines, npz or Parquet (writers in
:mod:`sparkvision.embedding_outputs`)."""

from __future__ import annotations

import sys

import click

from ..embedding_outputs import EMBED_FORMATS
from .options import (
    batch_size_option,
    format_option,
    model_option,
    open_output,
    output_option,
    progress_option,
    quiet_option,
    recursive_option,
    strict_option,
    threads_option,
)
from .progress import BarAwareStream, ProgressBar, Tally, check_folders, count_images, summary_line, tally

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
@progress_option()
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
    progress: bool | None,
    quiet: bool,
) -> None:
    """Image embeddings (the features before the classifier, or CLIP's image embeddings).

    Every file named gets a row: a failed image keeps its row, with an error and no embedding (NaNs
    in npz). Exit status as for classify: 0, 1 with --strict when an image failed, 2 for usage errors.
    """
    from .. import Classifier
    from ..embedding_outputs import write_embeddings
    from ..errors import ConfigError

    if fmt != "jsonl" and output is None:
        raise ConfigError(f"--format {fmt} writes a binary file: give --output FILE")
    if fmt == "parquet":
        from ..extras import require

        require("pyarrow.parquet", extra="parquet", purpose="embed --format parquet")  # before the work
    show_progress = sys.stderr.isatty() if progress is None else progress
    total = count_images(paths, recursive=recursive) if show_progress else None
    if total is None:
        check_folders(paths, recursive=recursive)
    classifier = Classifier.pretrained(model, threads=threads)
    if not classifier.spec.has_embeddings:
        raise ConfigError(f"model {classifier.spec.name!r} does not export image embeddings")
    bar = ProgressBar(sys.stderr, total=total, desc=classifier.spec.name) if show_progress else None
    counts = Tally()
    predictions = tally(
        classifier.embed(list(paths), batch_size=batch_size, recursive=recursive), counts, bar
    )
    try:
        text_out = BarAwareStream(sys.stdout, bar) if output is None and bar and sys.stdout.isatty() else None
        open_output(lambda: write_embeddings(predictions, fmt, output, stream=text_out), output)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(summary_line(counts, verb="embedded", model=classifier.spec.name, output=output), err=True)
    if strict and counts.failed:
        sys.exit(1)
