"""Option definitions every command shares, so that a flag means one thing across the whole CLI.

=====================  ===============================================================================
``-m``/``--model``     the model to run: a catalogue name, a cached model's name or a model directory
``-f``/``--format``    what the command prints or writes (each command lists its own choices)
``-o``/``--output``    where the command's result goes instead of stdout: a file, or a folder for
                       commands whose result is a folder (``import``, ``train``)
``-k``/``--top-k``     labels per image; the default and the limit are the request policy's
                       (:func:`sparkvision.options.resolve_top_k`), not the CLI's
``-b``/``--batch-size`` images per inference batch
``-t``/``--threads``   CPU cores to use (default: the physical cores)
``-r``/``--recursive`` descend into subfolders
``--force``            replace something that exists (no short form: ``-f`` is ``--format``)
=====================  ===============================================================================

Values are checked here only for their shape (a count is at least 1, an output folder exists);
what a value means for a model (is ``--top-k 7`` too many?) is decided below the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..models import DEFAULT_MODEL

__all__ = [
    "OutputPath",
    "batch_size_option",
    "force_option",
    "format_option",
    "model_option",
    "open_output",
    "output_option",
    "progress_option",
    "quiet_option",
    "recursive_option",
    "strict_option",
    "threads_option",
    "top_k_option",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Decorator = Callable[[F], F]


class PositiveInt(click.ParamType):
    """An integer of at least 1 (counts: batch size, threads)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(f"expected a whole number, got {value!r}", param, ctx)
        if number < 1:
            self.fail(f"must be at least 1, got {number}", param, ctx)
        return number


class OutputPath(click.ParamType):
    """A path the command will create or overwrite, checked before any work starts.

    ``kind="file"``: not a folder; its folder must exist and be writable (and the file, if it
    exists). ``kind="dir"``: a folder or nothing yet; missing parent folders are created by the
    command, so the nearest one that exists must be a writable folder. Returns the path as given.
    """

    name = "path"

    def __init__(self, kind: str = "file") -> None:
        if kind not in ("file", "dir"):
            raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = os.fsdecode(value)
        if not text:
            self.fail("empty path", param, ctx)
        path = Path(text).expanduser()
        if self.kind == "file":
            if path.is_dir():
                self.fail(f"{text!r} is a folder; name a file inside it", param, ctx)
            if not path.parent.exists():
                self.fail(f"folder {str(path.parent)!r} does not exist (create it first)", param, ctx)
            writable = path if path.exists() else path.parent
        else:
            if path.exists() and not path.is_dir():
                self.fail(f"{text!r} is a file, not a folder", param, ctx)
            writable = path
            while not writable.exists() and writable != writable.parent:
                writable = writable.parent
        if not writable.is_dir() and writable != path:
            self.fail(f"{str(writable)!r} is not a folder", param, ctx)
        if not os.access(writable, os.W_OK):
            self.fail(f"cannot write to {str(writable)!r}: permission denied", param, ctx)
        return text


def model_option(
    *, default: str | None = DEFAULT_MODEL, help: str = "Model name or model directory."
) -> Decorator:
    return click.option("-m", "--model", default=default, show_default=default is not None, help=help)


def format_option(choices: Sequence[str], *, default: str, help: str | None = None) -> Decorator:
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=help,
    )


def output_option(
    *, kind: str = "file", help: str = "Write here, not to stdout.", dest: str = "output"
) -> Decorator:
    """``-o/--output``: a file (``kind="file"``) or a folder (``kind="dir"``), checked up front."""
    return click.option("-o", "--output", dest, type=OutputPath(kind), default=None, help=help)


def top_k_option(
    *, help: str = "Labels per image [default: 5, or the model's label count if fewer]."
) -> Decorator:
    return click.option("-k", "--top-k", type=int, default=None, help=help)


def batch_size_option() -> Decorator:
    return click.option(
        "-b",
        "--batch-size",
        type=PositiveInt(),
        default=None,
        help="Images per inference batch [default: 16; caption: 8].",
    )


def threads_option() -> Decorator:
    return click.option(
        "-t",
        "--threads",
        type=PositiveInt(),
        default=None,
        help="CPU cores to use [default: all physical cores].",
    )


def recursive_option() -> Decorator:
    return click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders.")


def strict_option(help: str = "Exit with status 1 if any image fails.") -> Decorator:
    return click.option("--strict", is_flag=True, help=help)


def quiet_option() -> Decorator:
    return click.option("-q", "--quiet", is_flag=True, help="No summary line.")


def progress_option() -> Decorator:
    return click.option(
        "--progress/--no-progress", default=None, help="Progress bar on stderr [default: when a terminal]."
    )


def force_option(help: str = "Replace an existing model of the same name.") -> Decorator:
    return click.option("--force", is_flag=True, help=help)


def open_output(opener: Callable[[], T], output: str | None) -> T:
    """``opener()`` (which creates the ``--output`` file), with a file-system refusal reported as a
    usage error naming the path (:class:`~sparkvision.errors.ConfigError`, exit status 2)."""
    from ..errors import ConfigError

    try:
        return opener()
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from None
