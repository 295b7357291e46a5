"""``sparkvision evaluate`` and ``sparkvision train``: the work happens in :mod:`sparkvision.training`,
imported when a command runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .options import (
    OutputPath,
    batch_size_option,
    force_option,
    format_option,
    model_option,
    output_option,
    progress_option,
    threads_option,
)
from .progress import plural

__all__ = ["evaluate_command", "register", "train_command"]


def _want_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


@click.command("evaluate")
@click.argument("data", type=click.Path())
@model_option()
@format_option(("text", "json"), default="text")
@click.option(
    "--report",
    "report_dir",
    type=OutputPath("dir"),
    help="Write report.md, confusion_matrix.png, metrics.json and predictions.csv into this folder.",
)
@batch_size_option()
@threads_option()
@click.option(
    "--strict", is_flag=True, help="Exit with status 1 if an image is unreadable or a class unmapped."
)
@progress_option()
def evaluate_command(
    data: str,
    model: str,
    fmt: str,
    report_dir: str | None,
    batch_size: int | None,
    threads: int | None,
    strict: bool,
    progress: bool | None,
) -> None:
    """Measure a model on DATA, a folder with one subfolder of images per class.

    Folder names are matched to the model's classes by synset id (n02123045), exact label, or a
    label's first name (espresso); unmatched folders are listed and not scored. Prints top-1/top-5
    accuracy, per-class precision/recall/F1, the most-confused pairs and throughput.
    """
    from pathlib import Path

    from ..errors import InputNotFoundError
    from ..training import evaluate
    from ..training.report import _require_matplotlib, write_report

    if not Path(data).exists():
        raise InputNotFoundError(f"{data}: no such folder")
    if report_dir is not None:
        _require_matplotlib()  # fail before the work, not after it
    result = evaluate(data, model, batch_size=batch_size, threads=threads, progress=_want_progress(progress))
    written: dict[str, Any] = {}
    if report_dir is not None:
        written = write_report(result, report_dir)
    if fmt == "json":
        payload = result.to_dict()
        if written:
            payload["report"] = {key: str(path) for key, path in written.items()}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    else:
        _print_evaluation(result, written)
    if strict and (result.failed or result.unmapped):
        sys.exit(1)


def _print_evaluation(result: Any, written: dict[str, Any]) -> None:
    echo = click.echo
    echo(
        f"{result.model} on {result.data}: {plural(result.evaluated, 'image')} scored in "
        f"{plural(len(result.classes), 'class')}"
        + (f", {len(result.failed)} unreadable" if result.failed else "")
    )
    echo(
        f"top-1 {_pct(result.top1_accuracy)}   top-5 {_pct(result.top5_accuracy)}   "
        f"macro P/R/F1 {_pct(result.macro_precision)} / {_pct(result.macro_recall)} / {_pct(result.macro_f1)}   "
        f"{result.images_per_second:.1f} img/s"
    )
    width = max([5, *(len(c.folder) for c in result.classes)])
    echo(f"\n{'class':<{width}}  {'images':>6}  {'precision':>9}  {'recall':>7}  {'F1':>7}  model label")
    for c in result.classes:
        label = c.label if len(c.label) <= 50 else c.label[:49] + "…"
        echo(
            f"{c.folder:<{width}}  {c.support:>6}  {_pct(c.precision):>9}  {_pct(c.recall):>7}  "
            f"{_pct(c.f1):>7}  {label}"
        )
    if result.most_confused:
        echo("\nmost confused (true → predicted):")
        for true, predicted, count in result.most_confused:
            echo(f"  {count:>4} × {true} → {predicted}")
    for match in result.unmapped:
        echo(f"\nnot scored: folder {match.folder!r}: {match.problem}", err=True)
    if result.empty_classes:
        echo(f"empty class folders: {', '.join(result.empty_classes)}", err=True)
    if result.skipped_files:
        echo(f"{plural(result.skipped_files, 'non-image file')} skipped", err=True)
    for path, error in result.failed[:20]:
        echo(f"unreadable: {path}: {error}", err=True)
    if len(result.failed) > 20:
        echo(f"… and {len(result.failed) - 20} more unreadable images", err=True)
    if written:
        echo(f"\nreport: {written['markdown']} (confusion matrix: {written['confusion_matrix']})")


@click.command("train")
@click.argument("data", type=click.Path())
@click.option("-n", "--name", required=True, help="Name of the new model (letters, digits, '.', '_', '-').")
@click.option(
    "--base", default="efficientnet_lite0", show_default=True, help="Base model giving the embeddings."
)
@click.option(
    "--val", "val_dir", type=click.Path(), default=None, help="Validation folder (same class folders)."
)
@click.option(
    "--val-split",
    type=float,
    default=0.2,
    show_default=True,
    help="Fraction of each class held out for validation when --val is not given (0: none).",
)
@click.option("--epochs", type=int, default=None, help="Iteration cap [default: 1000 logistic, 200 softmax].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split and the training.")
@click.option(
    "--head",
    type=click.Choice(["logistic", "softmax"]),
    default="logistic",
    show_default=True,
    help="logistic: scikit-learn L-BFGS, C chosen on validation; softmax: numpy Adam, early stopping.",
)
@force_option()
@output_option(kind="dir", dest="output_dir", help="Write the model folder here, not the cache.")
@batch_size_option()
@threads_option()
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
@format_option(("text", "json"), default="text")
@progress_option()
def train_command(
    data: str,
    name: str,
    base: str,
    val_dir: str | None,
    val_split: float,
    epochs: int | None,
    seed: int,
    head: str,
    force: bool,
    output_dir: str | None,
    batch_size: int | None,
    threads: int | None,
    no_cache: bool,
    fmt: str,
    progress: bool | None,
) -> None:
    """Train a classifier for your own classes from DATA, a folder with one subfolder per class.

    The base model embeds every image once (cached, so re-runs are fast), a linear head is fitted
    with a validation split, and base + head are saved as one ONNX model named NAME:
    `sparkvision classify PHOTOS --model NAME` then uses it like any other model.
    """
    from ..errors import MissingExtraError
    from ..training import train

    if head == "logistic":
        try:
            import sklearn  # noqa: F401
        except ImportError as exc:
            raise MissingExtraError(
                "the logistic head needs scikit-learn: pip install 'sparkvision[train]' (or use --head softmax)",
                extra="train",
            ) from exc
    result = train(
        data,
        name=name,
        base=base,
        val=val_dir,
        val_split=val_split,
        epochs=epochs,
        seed=seed,
        head=head,  # type: ignore[arg-type]
        force=force,
        output_dir=output_dir,
        batch_size=batch_size,
        threads=threads,
        cache=not no_cache,
        progress=_want_progress(progress),
    )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    counts = ", ".join(f"{label} {n}" for label, n in result.train_counts.items())
    click.echo(
        f"trained {result.name}: {len(result.classes)} classes on {result.spec.extra['base_model']} embeddings"
    )
    click.echo(f"  training images: {counts}")
    if result.val_accuracy is not None:
        per_class = ", ".join(f"{label} {_pct(acc)}" for label, acc in result.per_class_val_accuracy.items())
        click.echo(
            f"  validation ({result.validation}, {plural(sum(result.val_counts.values()), 'image')}): "
            f"accuracy {_pct(result.val_accuracy)} ({per_class})"
        )
    else:
        click.echo("  no validation data (--val-split 0): accuracy not measured")
    fit = result.fit
    detail = (
        f"C={fit.settings['C']:g}"
        if fit.kind == "logistic"
        else f"best epoch {fit.best_epoch} of {fit.epochs_run}"
    )
    click.echo(f"  head: {fit.kind} ({detail}), training accuracy {_pct(fit.train_accuracy)}")
    click.echo(
        f"  time: embedding {result.embed_seconds:.1f} s ({plural(result.embedded, 'image')}, {result.from_cache} from cache), "
        f"training {result.train_seconds:.1f} s, export {result.export_seconds:.1f} s, total {result.seconds:.1f} s"
    )
    if result.failed:
        click.echo(f"  {plural(len(result.failed), 'unreadable image')} left out:", err=True)
        for path, error in result.failed[:20]:
            click.echo(f"    {path}: {error}", err=True)
    click.echo(f"saved to {result.model_dir}")
    target = result.name if output_dir is None else str(result.model_dir)
    click.echo(f"use it: sparkvision classify PHOTOS --model {target}")


def register(cli: click.Group) -> None:
    """Add ``evaluate`` and ``train`` to the ``sparkvision`` command group."""
    cli.add_command(evaluate_command)
    cli.add_command(train_command)
