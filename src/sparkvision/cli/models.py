"""``sparkvision models list | info | remove``: the catalogue and the model cache."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from .options import format_option

__all__ = ["models", "register"]


def register(group: click.Group) -> None:
    group.add_command(models)


def _wants_json(fmt: str, as_json: bool) -> bool:
    return as_json or fmt == "json"


_json_flag = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")


@click.group()
def models() -> None:
    """List, inspect and remove models."""


@models.command("list")
@format_option(("text", "json"), default="text")
@_json_flag
def models_list(fmt: str, as_json: bool) -> None:
    """Every model you can use: built in, and in your cache."""
    from ..models.catalogue import list_models

    rows = list_models()
    if _wants_json(fmt, as_json):
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
@format_option(("text", "json"), default="text")
@_json_flag
def models_info(name: str, fmt: str, as_json: bool) -> None:
    """Everything about one model: preprocessing, labels, provenance (builds it if needed)."""
    from ..models.catalogue import get_entry, resolve_model

    path, spec = resolve_model(name)
    info = spec.to_dict()
    info["path"] = str(path)
    info["num_classes"] = spec.num_classes
    labels = info.pop("labels")
    info.pop("synsets")
    if _wants_json(fmt, as_json):
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
    from ..errors import ModelNotFoundError
    from ..models.catalogue import remove_cached

    if not remove_cached(name):
        raise ModelNotFoundError(f"model {name!r} is not in the cache")
    click.echo(f"removed {name}")
