"""``sparkvision import`` and ``sparkvision embed``.

Only click is imported at module level, so ``sparkvision --help`` stays fast and works without torch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

__all__ = ["register"]

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
EMBED_FORMATS = ("jsonl", "npz", "parquet")


def register(cli: click.Group) -> None:
    """Add the commands of this module to the ``sparkvision`` group."""
    cli.add_command(import_command)
    cli.add_command(embed_command)


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise ConfigError(
            f"{option} takes comma-separated numbers, e.g. 0.485,0.456,0.406 (got {text!r})"
        ) from exc


def _preprocess_options(
    size: int | None,
    resize: str | None,
    crop_pct: float | None,
    interpolation: str | None,
    mean: str | None,
    std: str | None,
) -> Any:
    from ..errors import ConfigError
    from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

    given = [o for o, v in (("--resize", resize), ("--crop-pct", crop_pct), ("--interpolation", interpolation),
                            ("--mean", mean), ("--std", std)) if v is not None]  # fmt: skip
    if size is None:
        if given:
            raise ConfigError(f"{', '.join(given)} need --size (the model's input size in pixels)")
        return None
    return PreprocessSpec(
        size=size,
        resize=resize or "crop",  # type: ignore[arg-type]
        crop_pct=crop_pct if crop_pct is not None else 0.875,
        interpolation=interpolation or "bicubic",  # type: ignore[arg-type]
        mean=_floats(mean, "--mean") or IMAGENET_MEAN,  # type: ignore[arg-type]
        std=_floats(std, "--std") or IMAGENET_STD,  # type: ignore[arg-type]
    )


@click.command("import")
@click.argument("source")
@click.option("-n", "--name", default=None, help="Model name in the cache [default: from the source].")
@click.option(
    "-w", "--weights", type=click.Path(exists=True), default=None, help="Weights file for timm:ARCH sources."
)
@click.option(
    "--labels",
    default=None,
    metavar="FILE",
    help="Labels in output order: a text file (one per line), a JSON list / id2label, or 'imagenet-1k'.",
)
@click.option(
    "--size", type=int, default=None, help="Input size in pixels (ONNX files; overrides checkpoints)."
)
@click.option("--resize", type=click.Choice(["crop", "squash", "squash_crop"]), default=None,
              help="crop: short side to size/crop-pct, centre crop [default]; squash: straight to size×size.")  # fmt: skip
@click.option("--crop-pct", type=float, default=None, help="Centre-crop fraction [default: 0.875].")
@click.option("--interpolation", type=click.Choice(_INTERPOLATIONS), default=None, help="[default: bicubic]")
@click.option(
    "--mean", default=None, metavar="R,G,B", help="Normalisation mean on 0–1 pixels [default: ImageNet]."
)
@click.option(
    "--std", default=None, metavar="R,G,B", help="Normalisation std on 0–1 pixels [default: ImageNet]."
)
@click.option("--activation", type=click.Choice(["softmax", "sigmoid"]), default=None,
              help="Scores: softmax (one label) or sigmoid (multi-label) [default: from the checkpoint].")  # fmt: skip
@click.option("--output", "output_name", default=None, help="ONNX: the output holding the class scores.")
@click.option("--embeddings-output", default=None, help="ONNX: an output holding image features.")
@click.option("--license", "license_", default=None, help="Licence to record [default: the model card's].")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Write the model directory here instead of the cache.")  # fmt: skip
@click.option("-f", "--force", is_flag=True, help="Replace an existing model of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the imported model's description as JSON.")
def import_command(
    source: str,
    name: str | None,
    weights: str | None,
    labels: str | None,
    size: int | None,
    resize: str | None,
    crop_pct: float | None,
    interpolation: str | None,
    mean: str | None,
    std: str | None,
    activation: str | None,
    output_name: str | None,
    embeddings_output: str | None,
    license_: str | None,
    output_dir: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Import a model: a Hugging Face checkpoint directory, timm:ARCH --weights FILE, an .onnx file,
    hf:ORG/REPO (downloaded) or a catalogue name.

    \b
    sparkvision import ./vit-base-patch16-224 --name vit_base_patch16_224
    sparkvision import timm:resnet50.a1_in1k --weights resnet50.safetensors
    sparkvision import model.onnx --labels labels.txt --size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
    """
    from ..models.store import load_model_dir
    from . import import_model

    started = time.perf_counter()
    path = import_model(
        source,
        name,
        output_dir=output_dir,
        replace=force,
        weights=weights,
        labels=labels,
        preprocess=_preprocess_options(size, resize, crop_pct, interpolation, mean, std),
        activation=activation,
        output=output_name,
        embeddings_output=embeddings_output,
        license=license_,
    )
    spec = load_model_dir(path)
    if as_json:
        info = spec.to_dict()
        info.pop("labels")
        info.pop("synsets")
        info.update(path=str(path), num_classes=spec.num_classes)
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    pre = spec.preprocess
    classes = (
        f"{spec.num_classes} labels" if spec.task == "classification" else "zero-shot (labels at run time)"
    )
    click.echo(f"imported {spec.name} → {path} in {time.perf_counter() - started:.1f} s")
    click.echo(
        f"  {spec.family}, {classes}, {pre.size} px {pre.resize} ({pre.interpolation}), "
        f"activation {spec.activation}, outputs {', '.join(spec.outputs)}"
    )
    click.echo(f"  source {spec.source}, licence {spec.license or '?'}, weights sha256 {spec.weights_sha256}")


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-m", "--model", default=None, help="Model name or directory [default: efficientnet_lite0].")
@click.option("-f", "--format", "fmt", type=click.Choice(EMBED_FORMATS), default="jsonl", show_default=True,
              help="jsonl: one JSON object per image; npz: arrays embeddings/paths/errors; parquet: a table.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write here, not stdout.")
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders.")
@click.option("-b", "--batch-size", type=int, default=None, help="Images per inference batch [default: 16].")
@click.option(
    "-t", "--threads", type=int, default=None, help="ONNX Runtime threads [default: physical cores]."
)
@click.option("--strict", is_flag=True, help="Exit with status 1 if any image fails.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def embed_command(
    paths: tuple[str, ...],
    model: str | None,
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
    from ..errors import ConfigError, InputNotFoundError
    from ..extras import require
    from ..models.catalogue import DEFAULT_MODEL
    from ..tasks.classification import Classifier

    if fmt != "jsonl" and output is None:
        raise ConfigError(f"--format {fmt} writes a binary file: give --output FILE")
    if fmt == "parquet":
        require("pyarrow.parquet", extra="parquet", purpose="embed --format parquet")  # before the work
    for raw in paths:
        if not Path(raw).exists():
            raise InputNotFoundError(f"{raw}: no such file or directory")
    classifier = Classifier.pretrained(model or DEFAULT_MODEL, threads=threads)
    if not classifier.spec.has_embeddings:
        raise ConfigError(f"model {classifier.spec.name!r} does not export image embeddings")
    started = time.perf_counter()
    predictions = classifier.embed(list(paths), batch_size=batch_size, recursive=recursive)
    if fmt == "jsonl":
        done, failed = _write_jsonl(predictions, output)
    else:
        done, failed = _write_table(predictions, output, fmt)  # type: ignore[arg-type]
    if not quiet:
        elapsed = time.perf_counter() - started
        click.echo(
            f"{done} images: {done - failed} embedded, {failed} failed in {elapsed:.1f} s "
            f"(model {classifier.spec.name})" + (f"; wrote {output}" if output else ""),
            err=True,
        )
    if strict and failed:
        sys.exit(1)


def _record(prediction: Any) -> dict[str, Any]:
    return {
        "path": prediction.path,
        "embedding": None if prediction.embedding is None else [float(v) for v in prediction.embedding],
        "error": prediction.error,
    }


def _write_jsonl(predictions: Any, output: str | None) -> tuple[int, int]:
    done = failed = 0
    handle = open(output, "w", encoding="utf-8") if output else None  # noqa: SIM115
    try:
        for prediction in predictions:
            line = json.dumps(_record(prediction), ensure_ascii=False)
            if handle is None:
                click.echo(line)
            else:
                handle.write(line + "\n")
            done += 1
            failed += prediction.error is not None
    finally:
        if handle is not None:
            handle.close()
    return done, failed


def _write_table(predictions: Any, output: str, fmt: str) -> tuple[int, int]:
    import numpy as np

    rows = list(predictions)
    width = next((len(p.embedding) for p in rows if p.embedding is not None), 0)
    matrix = np.full((len(rows), width), np.nan, dtype=np.float32)
    for i, prediction in enumerate(rows):
        if prediction.embedding is not None:
            matrix[i] = prediction.embedding
    paths = [p.path or "" for p in rows]
    errors = [p.error or "" for p in rows]
    if fmt == "npz":
        with open(output, "wb") as handle:
            np.savez(handle, embeddings=matrix, paths=np.array(paths), errors=np.array(errors))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        embeddings = [
            None if p.embedding is None else np.asarray(p.embedding, dtype=np.float32) for p in rows
        ]
        table = pa.table(
            {
                "path": pa.array([p.path for p in rows], pa.string()),
                "embedding": pa.array(embeddings, pa.list_(pa.float32())),
                "error": pa.array([p.error for p in rows], pa.string()),
            }
        )
        pq.write_table(table, output)
    return len(rows), sum(p.error is not None for p in rows)
