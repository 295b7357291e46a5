"""``sparkvision classify``: labels for image files and folders, as a table, CSV, JSON, JSONL or Parquet.

Per-image failures are rows with an error, counted in the closing summary; they fail the run only
with ``--strict`` (exit status 1).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..outputs import FORMATS
from .options import (
    batch_size_option,
    format_option,
    model_option,
    output_option,
    progress_option,
    quiet_option,
    recursive_option,
    strict_option,
    threads_option,
    top_k_option,
)

if TYPE_CHECKING:
    from .. import Prediction

__all__ = ["classify", "register"]


def register(group: click.Group) -> None:
    group.add_command(classify)


def _check_paths(paths: tuple[str, ...], recursive: bool) -> None:
    """Fail fast, before any work, on arguments that cannot yield a single image."""
    from ..errors import InputNotFoundError
    from ..images import iter_image_files

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"{raw}: no such file or directory")
        if path.is_dir():
            next(iter(iter_image_files([path], recursive=recursive)))  # raises when there are none


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@model_option()
@top_k_option(help="Labels per image [default: 1 for table, else 5 (or the model's label count if fewer)].")
@format_option(FORMATS, default="table")
@output_option()
@recursive_option()
@batch_size_option()
@threads_option()
@click.option("--threshold", type=float, default=None, help="Only report labels scoring at least this.")
@click.option(
    "--labels",
    "candidate_labels",
    default=None,
    metavar="'A,B,...'",
    help="Candidate labels for a zero-shot model (e.g. CLIP), comma-separated.",
)
@strict_option()
@progress_option()
@quiet_option()
@click.option(
    "--spark",
    "spark_master",
    is_flag=False,
    flag_value="local[*]",
    default=None,
    metavar="[MASTER]",
    help="Run the job through Spark (default master local[*]); needs sparkvision[spark].",
)
def classify(
    paths: tuple[str, ...],
    model: str,
    top_k: int | None,
    fmt: str,
    output: str | None,
    recursive: bool,
    batch_size: int | None,
    threads: int | None,
    threshold: float | None,
    candidate_labels: str | None,
    strict: bool,
    progress: bool | None,
    quiet: bool,
    spark_master: str | None,
) -> None:
    """Classify images: files, folders (image files inside), or both."""
    from .. import Classifier
    from ..errors import ConfigError
    from ..options import check_threshold, parse_candidate_labels, resolve_top_k
    from ..outputs import open_writer

    threshold = check_threshold(threshold)
    labels = parse_candidate_labels(candidate_labels) if candidate_labels is not None else None
    _check_paths(paths, recursive)
    classifier = Classifier.pretrained(model, threads=threads)
    if labels is not None and spark_master is not None:
        raise ConfigError("zero-shot models (--labels) cannot run with --spark yet; drop --spark")
    # The table shows the top label by default (presentation); the other formats the policy's default.
    k = resolve_top_k(
        top_k,
        len(labels) if labels is not None else classifier.spec.num_classes,
        **({"default": 1} if fmt == "table" else {}),
    )
    if spark_master is not None:
        from ..spark.batch import classify_paths_with_spark

        predictions: Iterable[Prediction] = classify_paths_with_spark(
            list(paths),
            model=model,
            master=spark_master,
            top_k=k,
            batch_size=batch_size,
            recursive=recursive,
            threshold=threshold,
        )
    else:
        predictions = classifier.classify(
            list(paths),
            top_k=k,
            batch_size=batch_size,
            recursive=recursive,
            threshold=threshold,
            candidate_labels=labels,
        )
    # Start the stream before opening the output: a request the model refuses (a zero-shot model
    # without --labels) fails here, leaving no empty output file behind.
    started = time.perf_counter()
    stream = iter(predictions)
    first = next(stream, None)
    show_progress = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(unit="img", file=sys.stderr, desc=classifier.spec.name, dynamic_ncols=True)

    done = failed = 0
    try:
        with open_writer(fmt, output, k) as writer:
            for prediction in itertools.chain([first] if first is not None else [], stream):
                writer.write(prediction)
                done += 1
                failed += prediction.error is not None
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started
    if not quiet:
        rate = done / elapsed if elapsed > 0 else 0.0
        click.echo(
            f"{done} images: {done - failed} classified, {failed} failed in {elapsed:.1f} s "
            f"({rate:.1f} img/s, model {classifier.spec.name})" + (f"; wrote {output}" if output else ""),
            err=True,
        )
    if strict and failed:
        sys.exit(1)
