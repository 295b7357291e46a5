"""Write an :class:`~sparkvision.training.evaluation.Evaluation` to a folder people can open.

The report reads evaluations; evaluation knows nothing of reports (the import points one way).

* ``report.md`` — summary, per-class table, most-confused pairs, unmapped classes, unreadable images,
  and the confusion matrix image (Markdown renders on GitHub, in editors and with any converter);
* ``confusion_matrix.png`` — rows are true classes, columns predictions, colour is the share of the
  row; drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change);
* ``metrics.json`` — everything in machine-readable form;
* ``predictions.csv`` — one row per image: path, true class, prediction, score, correct, error.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError
from ..extras import install_hint
from .evaluation import Evaluation

__all__ = ["plot_confusion_matrix", "write_report"]

#: Beyond this many classes the cells are too small to print counts in.
_ANNOTATE_UP_TO = 30
_LIST_FAILED_UP_TO = 200


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"the evaluation report's confusion-matrix plot needs matplotlib: {install_hint('train')}",
            extra="train",
        ) from exc


def plot_confusion_matrix(evaluation: Evaluation, path: Path) -> Path:
    """Save the confusion matrix as a PNG (row-normalised colours, counts in the cells)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = evaluation.confusion
    rows = [c.folder for c in evaluation.classes]
    columns = evaluation.confusion_columns
    if not counts[:, -1].any():  # nothing predicted outside the data set's classes: no "(other)" column
        counts, columns = counts[:, :-1], columns[:-1]
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = min(40.0, max(5.0, 0.45 * len(columns) + 3))
    figure = Figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    axes.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(len(rows)), labels=rows)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true class")
    axes.set_title(
        f"{evaluation.model}: top-1 {evaluation.top1_accuracy:.1%} on {evaluation.evaluated} images"
    )
    if len(columns) <= _ANNOTATE_UP_TO:
        for r in range(counts.shape[0]):
            for c in range(counts.shape[1]):
                if counts[r, c]:
                    colour = "white" if shares[r, c] > 0.6 else "black"
                    axes.text(c, r, str(counts[r, c]), ha="center", va="center", color=colour, fontsize=8)
    figure.savefig(path, format="png")
    return path


def _cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks removed."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def render_markdown(evaluation: Evaluation, image_name: str | None = "confusion_matrix.png") -> str:
    """The report as Markdown."""
    e = evaluation
    lines = [
        f"# Evaluation of `{e.model}`",
        "",
        f"Data: `{e.data}`" if e.data else "Data: (in memory)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| images scored | {e.evaluated} |",
        f"| unreadable images | {len(e.failed)} |",
        f"| top-1 accuracy | {_pct(e.top1_accuracy)} |",
        f"| top-5 accuracy | {_pct(e.top5_accuracy)} |",
        f"| macro precision / recall / F1 | {_pct(e.macro_precision)} / {_pct(e.macro_recall)} / {_pct(e.macro_f1)} |",
        f"| throughput | {e.images_per_second:.1f} images/s ({e.images} images in {e.seconds:.1f} s, decode included) |",
        "",
        "## Per class",
        "",
        "| class | model label | images | precision | recall | F1 | top-5 recall |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in e.classes:
        lines.append(
            f"| {_cell(c.folder)} | {_cell(c.label)} | {c.support} | {_pct(c.precision)} | {_pct(c.recall)} "
            f"| {_pct(c.f1)} | {_pct(c.top5_recall)} |"
        )
    lines += ["", "Precision counts only predictions made on these images.", ""]
    lines += ["## Most confused", ""]
    if e.most_confused:
        lines += ["| true class | predicted | images |", "|---|---|---:|"]
        lines += [f"| {_cell(t)} | {_cell(p)} | {n} |" for t, p, n in e.most_confused]
    else:
        lines.append("No mistakes.")
    if image_name:
        lines += ["", "## Confusion matrix", "", f"![confusion matrix]({image_name})"]
    if e.unmapped:
        lines += ["", "## Classes not scored", "", "These folders match no class of the model:", ""]
        lines += [f"- `{_cell(m.folder)}`: {_cell(m.problem)}" for m in e.unmapped]
    if e.empty_classes:
        lines += ["", f"Empty class folders (no image files): {', '.join(f'`{c}`' for c in e.empty_classes)}"]
    if e.skipped_files:
        lines += ["", f"{e.skipped_files} file(s) were skipped because they are not image files."]
    if e.failed:
        lines += ["", "## Unreadable images", ""]
        lines += [f"- `{_cell(p)}`: {_cell(err)}" for p, err in e.failed[:_LIST_FAILED_UP_TO]]
        if len(e.failed) > _LIST_FAILED_UP_TO:
            lines.append(f"- … and {len(e.failed) - _LIST_FAILED_UP_TO} more (see predictions.csv)")
    return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.md``, ``confusion_matrix.png``, ``metrics.json`` and ``predictions.csv`` into
    ``directory`` (created if needed); returns their paths by kind."""
    _require_matplotlib()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": directory / "report.md",
        "confusion_matrix": directory / "confusion_matrix.png",
        "metrics": directory / "metrics.json",
        "predictions": directory / "predictions.csv",
    }
    plot_confusion_matrix(evaluation, paths["confusion_matrix"])
    paths["markdown"].write_text(render_markdown(evaluation), encoding="utf-8")
    paths["metrics"].write_text(
        json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with open(paths["predictions"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=["path", "true", "true_label", "predicted", "score", "correct", "top5", "error"]
        )
        writer.writeheader()
        writer.writerows(evaluation.records)
    return paths
