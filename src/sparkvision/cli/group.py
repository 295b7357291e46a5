"""The ``sparkvision`` command group: how every command's failures reach the user.

Every mistake a user can make is reported the same way: one line on stderr, ``error: …``, and a
documented exit status, never a traceback:

* **2** — a usage error: click's own (unknown option, missing argument, a value of the wrong type or
  range), an output path that cannot be written, and sparkvision's :class:`ConfigError`,
  :class:`InputNotFoundError` and :class:`ModelNotFoundError` (bad value, nothing to read, unknown
  model);
* **1** — any other :class:`SparkvisionError` (a damaged model, a failed import) or a file-system
  error while writing; a command's own failure status (``--strict``) is also 1;
* **130** — interrupted (Ctrl+C).

Per-image failures are not errors of the command: they are rows with an ``error``.
"""

from __future__ import annotations

import errno
import sys
from typing import Any, NoReturn

import click

from ..errors import ConfigError, InputNotFoundError, ModelNotFoundError, SparkvisionError

__all__ = ["USAGE_ERRORS", "SparkvisionGroup", "fail"]

#: sparkvision errors that mean "you asked for something that cannot be done": exit status 2.
USAGE_ERRORS = (ConfigError, InputNotFoundError, ModelNotFoundError)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(message: str, status: int) -> NoReturn:
    """Print ``error: message`` (one line) on stderr and exit with ``status``."""
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(status)


def _usage_message(exc: click.UsageError) -> str:
    message = exc.format_message()
    message = message[:1].lower() + message[1:]
    ctx = exc.ctx
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message = f"{message.rstrip('.')} (see '{ctx.command_path} --help')"
    return message


class SparkvisionGroup(click.Group):
    """A click group that turns every user-facing failure into one ``error:`` line (see the module)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SparkvisionError as exc:
            fail(str(exc), 2 if isinstance(exc, USAGE_ERRORS) else 1)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click handles a closed pipe quietly
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}", 1)

    def main(self, args: Any = None, prog_name: str | None = None, *extra_args: Any, **extra: Any) -> Any:
        """Run the CLI; click's usage errors are printed as one ``error:`` line (exit status 2)."""
        standalone = extra.pop("standalone_mode", True)
        if not standalone:
            return super().main(args, prog_name, *extra_args, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, *extra_args, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # plain `sparkvision`: the help, not an error
            click.echo(exc.ctx.get_help() if exc.ctx is not None else "")
            sys.exit(0)
        except click.UsageError as exc:
            fail(_usage_message(exc), 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("interrupted", 130)
        # A command returns None; click returns an int for ctx.exit(n), --help and --version.
        sys.exit(status if isinstance(status, int) else 0)
