"""The ``sparkvision`` command line: a thin layer over :class:`sparkvision.Classifier`.

Errors from sparkvision become one clean line on stderr (``error: ...``) and exit status 2 for usage
problems (bad option, missing path, unknown model) or 1 for anything else. Per-image failures are not
errors of the command: they are rows with an error, counted in the closing summary, and only fail the
run with ``--strict``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._version import __version__
from .errors import ConfigError, InputNotFoundError, ModelNotFoundError, SparkvisionError
from .models.catalogue import DEFAULT_MODEL, get_entry, list_models, remove_cached, resolve_model
from .options import DEFAULT_TOP_K, parse_candidate_labels, resolve_top_k
from .outputs import FORMATS, open_writer

if TYPE_CHECKING:
    from .results import Prediction

__all__ = ["cli", "main"]

#: Modules that add commands of their own (``serve``, ``import``, ``train``...). Each defines
#: ``register(cli: click.Group) -> None`` and must import only click at module level, so that
#: ``sparkvision --help`` stays fast and works without the optional extras installed.
COMMAND_MODULES = (
    "sparkvision.serve.command",
    "sparkvision.importers.command",
    "sparkvision.training.command",
)

USAGE_ERRORS = (ConfigError, InputNotFoundError, ModelNotFoundError)


class _Group(click.Group):
    """Translates sparkvision's exceptions into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SparkvisionError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2 if isinstance(exc, USAGE_ERRORS) else 1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sparkvision")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Classify images with pretrained models, on the CPU, offline."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _check_paths(paths: tuple[str, ...], recursive: bool) -> None:
    """Fail fast, before any work, on arguments that cannot yield a single image."""
    from .images import iter_image_files

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"{raw}: no such file or directory")
        if path.is_dir():
            next(iter(iter_image_files([path], recursive=recursive)))  # raises when there are none


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model name or model directory."
)
@click.option(
    "-k", "--top-k", type=int, default=None, help="Labels per image [default: 1 for table, else 5]."
)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here, not stdout."
)
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders.")
@click.option("-b", "--batch-size", type=int, default=None, help="Images per inference batch [default: 16].")
@click.option(
    "-t",
    "--threads",
    type=int,
    default=None,
    help="Cores to use: batches at once, one per core [default: physical cores].",
)
@click.option("--threshold", type=float, default=None, help="Only report labels scoring at least this.")
@click.option(
    "--labels",
    "candidate_labels",
    default=None,
    metavar="'A,B,...'",
    help="Candidate labels for a zero-shot model (e.g. CLIP), comma-separated.",
)
@click.option("--strict", is_flag=True, help="Exit with status 1 if any image fails.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal]."
)
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
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
    from .tasks.classification import Classifier

    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    _check_paths(paths, recursive)
    classifier = Classifier.pretrained(model, threads=threads)
    if (candidate_labels is not None or classifier.spec.task == "zero-shot") and spark_master is not None:
        raise ConfigError("zero-shot models (--labels) cannot run with --spark yet; drop --spark")
    labels = parse_candidate_labels(candidate_labels) if candidate_labels is not None else None
    # the table shows the top label unless asked for more; other formats the policy's default
    k = resolve_top_k(
        top_k,
        len(labels) if labels else classifier.spec.num_classes,
        default=1 if fmt == "table" else DEFAULT_TOP_K,
    )
    if spark_master is not None:
        from .spark.batch import classify_paths_with_spark

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
        predictions = None  # streamed by the embedded classifier below
    show_progress = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(unit="img", file=sys.stderr, desc=classifier.spec.name, dynamic_ncols=True)

    started = time.perf_counter()
    done = failed = 0
    try:
        with open_writer(fmt, output, k) as writer:
            if predictions is None:
                predictions = classifier.classify(
                    list(paths),
                    top_k=k,
                    batch_size=batch_size,
                    recursive=recursive,
                    threshold=threshold,
                    progress=bar,
                    candidate_labels=labels,
                )
            for prediction in predictions:
                writer.write(prediction)
                done += 1
                failed += prediction.error is not None
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


@cli.group()
def models() -> None:
    """List, inspect and remove models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """Every model you can use: built in, and in your cache."""
    rows = list_models()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    header = f"{'name':<44} {'family':<18} {'task':<14} {'size':>4} {'classes':>7} {'licence':<12} {'cached':<6} source"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(
            f"{r.name:<44} {r.family:<18} {r.task:<14} {r.input_size or '':>4} {r.num_classes or '-':>7} "
            f"{r.license or '?':<12} {'yes' if r.cached else 'no':<6} {r.source}"
        )


@models.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def models_info(name: str, as_json: bool) -> None:
    """Everything about one model: preprocessing, labels, provenance (builds it if needed)."""
    path, spec = resolve_model(name)
    info = spec.to_dict()
    info["path"] = str(path)
    info["num_classes"] = spec.num_classes
    labels = info.pop("labels")
    info.pop("synsets")
    if as_json:
        info["labels"] = labels
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    entry = get_entry(name)
    click.echo(f"{spec.name}  ({spec.family}, {spec.task})")
    if entry is not None and entry.description:
        click.echo(f"  {entry.description}")
    click.echo(f"  path:        {path}")
    click.echo(f"  source:      {spec.source}   licence: {spec.license or '?'}")
    click.echo(f"  weights:     sha256 {spec.weights_sha256 or '?'}")
    click.echo(f"  outputs:     {', '.join(spec.outputs)}   activation: {spec.activation}")
    pre = spec.preprocess
    click.echo(
        f"  preprocess:  {pre.size}px, {pre.resize} (crop_pct {pre.crop_pct}), {pre.interpolation}, "
        f"mean {list(pre.mean)}, std {list(pre.std)}"
    )
    shown = ", ".join(labels[:5]) + (", …" if len(labels) > 5 else "")
    click.echo(f"  labels:      {len(labels)}: {shown}")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Delete a model from the cache (built-in models are rebuilt on next use)."""
    if not remove_cached(name):
        raise ModelNotFoundError(f"model {name!r} is not in the cache")
    click.echo(f"removed {name}")


def _register_optional_commands() -> None:
    import importlib

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that front is not part of this installation
            raise
        module.register(cli)


_register_optional_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="sparkvision")


if __name__ == "__main__":
    main()
