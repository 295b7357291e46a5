"""``sparkvision import``: turn a checkpoint (Hugging Face, timm, ONNX, Hub, catalogue) into a model.

The conversion itself is :func:`sparkvision.importers.import_model` (it needs the ``import`` extra,
imported only when the command runs).
"""

from __future__ import annotations

import json
import time

import click

from .options import force_option, format_option, output_option

__all__ = ["import_command", "register"]

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")


def register(group: click.Group) -> None:
    group.add_command(import_command)


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
) -> object:
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
@click.option(
    "--logits-output", default=None, metavar="NAME", help="ONNX: the output holding the class scores."
)
@click.option(
    "--embeddings-output", default=None, metavar="NAME", help="ONNX: an output holding image features."
)
@click.option("--license", "license_", default=None, help="Licence to record [default: the model card's].")
@output_option(kind="dir", dest="output_dir", help="Write the model folder here instead of the cache.")
@force_option()
@format_option(("text", "json"), default="text", help="json: the imported model's description.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
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
    logits_output: str | None,
    embeddings_output: str | None,
    license_: str | None,
    output_dir: str | None,
    force: bool,
    fmt: str,
    as_json: bool,
) -> None:
    """Import a model: a Hugging Face checkpoint directory, timm:ARCH --weights FILE, an .onnx file,
    hf:ORG/REPO (downloaded) or a catalogue name.

    \b
    sparkvision import ./vit-base-patch16-224 --name vit_base_patch16_224
    sparkvision import timm:resnet50.a1_in1k --weights resnet50.safetensors
    sparkvision import model.onnx --labels labels.txt --size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
    """
    from ..importers import import_model
    from ..models.store import load_model_dir

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
        output=logits_output,
        embeddings_output=embeddings_output,
        license=license_,
    )
    spec = load_model_dir(path)
    if as_json or fmt == "json":
        info = spec.to_dict()
        info.pop("labels")
        info.pop("synsets")
        info.update(path=str(path), num_classes=spec.num_classes)
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    pre = spec.preprocess
    classes = {
        "classification": f"{spec.num_classes} labels",
        "zero-shot": "zero-shot (labels at run time)",
        "captioning": "captioning (text generation)",
    }.get(spec.task, spec.task)
    click.echo(f"imported {spec.name} → {path} in {time.perf_counter() - started:.1f} s")
    click.echo(
        f"  {spec.family}, {classes}, {pre.size} px {pre.resize} ({pre.interpolation}), "
        f"activation {spec.activation}, outputs {', '.join(spec.outputs)}"
    )
    click.echo(f"  source {spec.source}, licence {spec.license or '?'}, weights sha256 {spec.weights_sha256}")
