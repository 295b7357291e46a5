r"""File names in outputs: every name survives, whatever bytes it holds.

On Linux a file name is bytes. Python gives names that are not valid UTF-8 to us as ``str`` with
each undecodable byte ``0xXY`` as the lone surrogate ``U+DCXY`` (the ``surrogateescape`` rule of
:func:`os.fsdecode`), and :func:`os.fsencode` turns such a string back into the exact bytes. A lone
surrogate cannot be written as UTF-8, so each output format spells it out:

* **JSON and JSON Lines** use JSON's own escape: byte ``0xE9`` is ``\udce9`` inside the string.
  ``json.loads`` gives the surrogate back, so ``os.fsencode(json.loads(line)["path"])`` is the file's
  name as bytes. (Other lone surrogates, which no file name holds, are written the same way.)
* **CSV and Parquet** hold plain UTF-8 text, so they use :func:`escape_text`: each lone surrogate
  is the six characters ``\udcXY``, and a backslash that is itself followed by ``u`` and four hex
  digits is written ``\u005c`` so that no name can be mistaken for an escape. Names without such
  bytes or sequences are written unchanged. :func:`unescape_text` reverses it:
  ``os.fsencode(unescape_text(row["path"]))`` is the name as bytes. CSV fields holding a line
  break (``\r`` or ``\n``) are quoted, so a reader sees one row per image.
* **npz** (``sparkvision embed``) stores the Python strings themselves (NumPy keeps surrogates).
* **The table** is for people: :func:`display_text` shows an undecodable byte as ``\xe9`` and a
  control character as ``\n``, ``\r``, ``\t`` or ``\x1b``, so every row stays one line and nothing
  is sent to the terminal as a control sequence. It is not meant to be read back.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["display_text", "dumps_json", "escape_text", "unescape_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# What escape_text must protect: lone surrogates, and a backslash that would read as an escape.
_NEEDS_ESCAPE = re.compile(r"[\ud800-\udfff]|\\(?=u[0-9a-fA-F]{4})")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# Control characters (C0, DEL, C1) and lone surrogates: shown escaped in the table.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _u_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_text(text: str) -> str:
    r"""``text`` as valid UTF-8 text that :func:`unescape_text` turns back into ``text`` exactly.

    >>> escape_text("caf\udce9.jpg")
    'caf\\udce9.jpg'
    >>> unescape_text(escape_text("caf\udce9.jpg")) == "caf\udce9.jpg"
    True
    """
    return _NEEDS_ESCAPE.sub(_u_escape, text)


def unescape_text(text: str) -> str:
    r"""The inverse of :func:`escape_text`: every ``\uXXXX`` becomes the character it names."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def display_text(text: str) -> str:
    r"""``text`` for a terminal: one line, no control characters; an undecodable byte shows as ``\xNN``.

    >>> display_text("two\nlines \udce9.jpg")
    'two\\nlines \\xe9.jpg'
    """

    def show(match: re.Match[str]) -> str:
        char = match.group()
        if char in _NAMED:
            return _NAMED[char]
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode carries it
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(show, text)


def dumps_json(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)``, with lone surrogates written as JSON ``\\uXXXX``
    escapes, so the result is valid UTF-8 and ``json.loads`` returns them unchanged."""
    return _SURROGATE.sub(_u_escape, json.dumps(value, ensure_ascii=False))
