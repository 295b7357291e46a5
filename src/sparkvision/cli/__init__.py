"""The ``sparkvision`` command line: one module per command group, over the Python API.

Each module in :data:`COMMAND_MODULES` defines ``register(group: click.Group) -> None`` and imports
only click (and this package) at module level: what a command needs — ONNX Runtime, FastAPI, torch,
Spark — is imported when the command runs, so ``sparkvision --help`` stays fast and works without the
optional extras. Adding a command group is one new module here plus its name in
:data:`COMMAND_MODULES`.

Options shared by several commands are defined once in :mod:`sparkvision.cli.options`; how errors
become one ``error:`` line and an exit status is in :mod:`sparkvision.cli.group`.
"""

from __future__ import annotations

import importlib
import logging

import click

from .. import __version__
from .group import SparkvisionGroup

__all__ = ["COMMAND_MODULES", "cli", "main"]

#: The command modules of this package, each registering its commands on :data:`cli`.
COMMAND_MODULES = (
    "classify",
    "caption",
    "embed",
    "models",
    "quantize",
    "importing",
    "serve",
    "training",
    "cluster",
)


@click.group("sparkvision", cls=SparkvisionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sparkvision")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Classify images with pretrained models, on the CPU, offline."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(cli)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``sparkvision = "sparkvision.cli:main"``)."""
    cli.main(args=argv, prog_name="sparkvision")
