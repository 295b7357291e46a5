"""``sparkvision quantize MODEL --calibration DIR``: an int8 version of any model, calibrated on photos."""

from __future__ import annotations

import time

import click

from .options import force_option

__all__ = ["quantize", "register"]


def register(group: click.Group) -> None:
    group.add_command(quantize)


@click.command()
@click.argument("model")
@click.option(
    "--calibration",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of photos like the ones you will classify (about a hundred is plenty).",
)
@click.option("--name", default=None, help="Name of the int8 model in the cache [default: MODEL_int8].")
@click.option(
    "--format",
    "quant_format",
    type=click.Choice(["qdq", "qoperator"]),
    default="qdq",
    show_default=True,
    help="ONNX Runtime's quantized graph format.",
)
@click.option(
    "--keep-float",
    "keep_float",
    multiple=True,
    metavar="NODE",
    help="Keep this layer (an ONNX node name) in float; repeat for more. [default: for a catalogue "
    "model, the layers its shipped int8 variant keeps in float; else none]",
)
@force_option()
def quantize(
    model: str,
    calibration: str,
    name: str | None,
    quant_format: str,
    keep_float: tuple[str, ...],
    force: bool,
) -> None:
    """Make an int8 version of MODEL (uint8 activations, int8 per-channel weights), calibrated on
    your photos; use it with --model NAME, or --precision int8 when NAME is MODEL_int8."""
    from ..models.catalogue import resolve_model
    from ..models.quantize import quantize as quantize_model

    started = time.perf_counter()
    source_dir, _ = resolve_model(model)
    path, spec = quantize_model(
        source_dir,
        calibration,
        name=name,
        replace=force,
        quant_format=quant_format,
        float_nodes=keep_float or None,
    )
    details = spec.extra.get("quantization", {})
    kept = len(details.get("float_nodes", ()))
    click.echo(
        f"{spec.name}: int8 model from {model} calibrated on {details.get('calibration_images')} images"
        f"{f', {kept} nodes kept in float' if kept else ''}, in "
        f"{time.perf_counter() - started:.0f} s -> {path}"
    )
