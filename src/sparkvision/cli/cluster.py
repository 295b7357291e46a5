"""``sparkvision cluster pack-env OUT.tar.gz``: the Python environment a Spark cluster's executors need.

Imports only click at module level; venv-pack and the build run when the command does.
"""

from __future__ import annotations

import click

__all__ = ["register"]


def register(cli: click.Group) -> None:
    """Add the ``cluster`` command group to the ``sparkvision`` command group."""

    @cli.group("cluster")
    def cluster() -> None:
        """Run sparkvision's Spark stages on a real cluster."""

    @cluster.command("pack-env")
    @click.argument("out", type=click.Path(dir_okay=False))
    @click.option(
        "--source",
        default=None,
        help="A sparkvision wheel, source checkout or requirement to install "
        "[default: this installation's checkout, else sparkvision==VERSION].",
    )
    @click.option(
        "--with-pyspark", is_flag=True, help="Also install PySpark (for a driver run from the archive)."
    )
    @click.option(
        "--extra",
        "extras",
        multiple=True,
        metavar="NAME",
        help="Another sparkvision extra the executors need, e.g. zero-shot (repeatable).",
    )
    @click.option(
        "-r",
        "--requirement",
        "requirements",
        multiple=True,
        metavar="REQ",
        help="Another package (repeatable).",
    )
    @click.option(
        "--pip-arg", "pip_args", multiple=True, metavar="ARG", help="Extra pip install argument (repeatable)."
    )
    @click.option(
        "--compress-level", type=click.IntRange(1, 9), default=4, show_default=True, help="gzip level."
    )
    def pack_env_command(
        out: str,
        source: str | None,
        with_pyspark: bool,
        extras: tuple[str, ...],
        requirements: tuple[str, ...],
        pip_args: tuple[str, ...],
        compress_level: int,
    ) -> None:
        """Pack a virtualenv with sparkvision for the executors into OUT (.tar.gz or .tgz).

        Ship it with sparkvision.start(master, environment=OUT), or with
        PYSPARK_DRIVER_PYTHON=python PYSPARK_PYTHON=./environment/bin/python
        spark-submit --archives OUT#environment app.py (client mode).
        """
        from ..spark.cluster import pack_env

        path = pack_env(
            out,
            source=source,
            include_pyspark=with_pyspark,
            extras=extras,
            requirements=requirements,
            pip_args=pip_args,
            compress_level=compress_level,
            log=lambda line: click.echo(line, err=True),
        )
        size = path.stat().st_size / 1e6
        click.echo(f"{path} ({size:.0f} MB): sparkvision.start(master, environment={str(path)!r})")
