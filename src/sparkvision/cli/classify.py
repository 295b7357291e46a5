"""``sparkvision classify``: labels for image files and folders, as a table, CSV, JSON, JSONL or Parquet.

Per-image failures are rows with an error, counted in the closing summary; they fail the run only
with ``--strict`` (exit status 1).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from ..outputs import FORMATS
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
    top_k_option,
)
from .progress import BarAwareStream, ProgressBar, Tally, check_folders, count_images, summary_line, tally

if TYPE_CHECKING:
    from .. import Prediction

__all__ = ["classify", "register"]


def register(group: click.Group) -> None:
    group.add_command(classify)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@model_option()
@top_k_option(help="Labels per image [default: 1 for table, else 5 (or the model's label count if fewer)].")
@format_option(
    FORMATS, default="table", help="table: for people; csv, json, jsonl; parquet (needs --output)."
)
@output_option()
@recursive_option()
@batch_size_option()
@threads_option()
@click.option("--threshold", type=float, default=None, help="Only report labels scoring at least this.")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="int8: the model's int8 variant (efficientnet_lite0 -> efficientnet_lite0_int8); its network runs 2-2.5x faster.",
)
@click.option(
    "--decode",
    type=click.Choice(["fast", "exact"]),
    default="fast",
    show_default=True,
    help="exact: decode and resize exactly as the reference preprocessing (slower; for parity checks).",
)
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
    "use_spark",
    is_flag=True,
    help="Run the job through Spark (local[*]); needs sparkvision[spark].",
)
@click.option(
    "--spark-master",
    "spark_master",
    default=None,
    metavar="URL",
    help="Spark master for the job (implies --spark): local[4], spark://host:7077, yarn, ...",
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
    precision: str,
    decode: str,
    candidate_labels: str | None,
    strict: bool,
    progress: bool | None,
    quiet: bool,
    use_spark: bool,
    spark_master: str | None,
) -> None:
    """Classify images: files, folders (image files inside), or both.

    Every file named gets a row, even one that cannot be read or does not exist (an error row);
    the exit status is 0 unless --strict and an image failed (1), or for a usage error (2).
    """
    from .. import Classifier
    from ..errors import ConfigError
    from ..models.catalogue import with_precision
    from ..options import DEFAULT_TOP_K, check_threshold, parse_candidate_labels, resolve_top_k
    from ..outputs import open_writer

    threshold = check_threshold(threshold)
    if use_spark and spark_master is None:
        spark_master = "local[*]"  # --spark alone: every core of this machine
    labels = parse_candidate_labels(candidate_labels) if candidate_labels is not None else None
    show_progress = sys.stderr.isatty() if progress is None else progress
    # Counting the inputs lists the folders once more: only worth it for the bar's total and ETA.
    total = count_images(paths, recursive=recursive) if show_progress else None
    if total is None:
        check_folders(paths, recursive=recursive)
    model = with_precision(model, precision)
    if decode == "exact" and spark_master is not None:
        raise ConfigError("--decode exact cannot run with --spark yet; drop one of them")
    classifier = Classifier.pretrained(model, threads=threads, decode=decode)  # any labelling model
    if spark_master is not None and (labels is not None or classifier.spec.task == "zero-shot"):
        raise ConfigError("zero-shot models (--labels) cannot run with --spark yet; drop --spark")
    # The table shows the top label by default (presentation); the other formats the policy's default.
    num_labels = len(labels) if labels is not None else classifier.spec.num_classes
    # A zero-shot model without --labels has no labels to count: the task itself says what is missing.
    k = resolve_top_k(top_k, num_labels, default=1 if fmt == "table" else DEFAULT_TOP_K) if num_labels else 1
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
    bar = ProgressBar(sys.stderr, total=total, desc=classifier.spec.name) if show_progress else None
    counts = Tally()
    stream = tally(predictions, counts, bar)
    try:
        # Start the stream before opening the output: a request the model refuses (a zero-shot
        # model without --labels) fails here, leaving no empty output file behind.
        first = list(itertools.islice(stream, 1))
        text_out = None
        if output is None and bar is not None and sys.stdout.isatty():
            text_out = BarAwareStream(sys.stdout, bar)  # rows and bar share the terminal
        with open_output(lambda: open_writer(fmt, output, k, stream=text_out), output) as writer:
            for prediction in itertools.chain(first, stream):
                writer.write(prediction)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        click.echo(
            summary_line(counts, verb="classified", model=classifier.spec.name, output=output), err=True
        )
    if strict and counts.failed:
        sys.exit(1)
