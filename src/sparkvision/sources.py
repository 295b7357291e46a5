"""What a task's ``inputs`` may be, flattened into a stream of ``(source, path)`` pairs.

A single input is a path, bytes, a Pillow image, an array, a decoded or a prepared image; anything
else iterable is a collection of them, and a folder stands for the image files inside it (streamed,
sorted; ``recursive`` descends). :class:`InMemorySources` marks a stream whose items are never paths
(a Spark partition's bytes, the web service's uploads), so its strings are not looked up on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError, InputNotFoundError
from .images import DecodedImage, DecodedPixels, iter_image_files
from .results import PreparedImage

__all__ = ["SINGLE_INPUTS", "InMemorySources", "iter_sources"]

#: Inputs that are one image each (anything else iterable is a collection of inputs).
SINGLE_INPUTS = (
    str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray, DecodedImage, DecodedPixels,
    PreparedImage,
)  # fmt: skip


class InMemorySources:
    """Marks an iterable whose items are all in-memory sources, never paths to expand."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def iter_sources(inputs: Any, *, recursive: bool = False) -> Iterator[tuple[Any, str | None]]:
    """Flatten task inputs into ``(source, path-or-None)`` pairs, streaming folder contents.

    A single path that does not exist raises :class:`InputNotFoundError`; inside a list, a missing
    file becomes that row's error instead, so one bad name doesn't lose the others' results.
    """
    if isinstance(inputs, InMemorySources):
        for item in inputs.items:
            yield item, None
        return
    if isinstance(inputs, SINGLE_INPUTS):
        if isinstance(inputs, (str, os.PathLike)) and not Path(inputs).exists():
            raise InputNotFoundError(f"{os.fspath(inputs)} does not exist")
        inputs = [inputs]
    elif not isinstance(inputs, Iterable):
        raise ConfigError(
            f"cannot read images from a {type(inputs).__name__}: give paths, bytes, images or arrays"
        )
    for item in inputs:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.is_dir():
                for file in iter_image_files([path], recursive=recursive):
                    yield file, str(file)
            else:
                yield path, os.fspath(item)
        else:
            yield item, None
