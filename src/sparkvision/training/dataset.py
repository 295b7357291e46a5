"""Labelled images: a folder with one subfolder per class, or explicit ``(image, label)`` pairs.

``discover_dataset("data/train")`` reads the usual layout::

    data/train/
        cat/       img1.jpg  img2.png  nested/img3.jpg
        dog/       ...

Every visible subfolder is a class named after the folder; its images are found recursively (hidden
files and folders are skipped, like everywhere else in sparkvision). Files whose extension is not an
image type are skipped and *listed*, never silently lost. The result records empty class folders
rather than raising, because what to do about them depends on the caller: training refuses them,
evaluation reports them.

Labels are normalised to Unicode NFC, so the same name typed on macOS (which stores file names
decomposed) and on Linux is one class, not two.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputNotFoundError
from ..images import IMAGE_EXTENSIONS

__all__ = ["LabelledImages", "check_label", "discover_dataset", "labelled_images"]

MAX_LABEL_LENGTH = 200


def check_label(label: object) -> str:
    """A usable class label: a non-blank string without control characters, NFC-normalised.

    Any other character is allowed — slashes, commas and non-Latin scripts included — because labels
    are data stored in ``sparkvision.json``, never used as file names.
    """
    if not isinstance(label, str):
        raise ConfigError(f"class labels must be strings, got {type(label).__name__} {label!r}")
    text = unicodedata.normalize("NFC", label)
    if not text.strip():
        raise ConfigError("a class label is empty or only spaces; give every class a name")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text):
        raise ConfigError(f"class label {label!r} contains control characters; rename the class")
    if len(text) > MAX_LABEL_LENGTH:
        raise ConfigError(f"class label {text[:40]!r}… is longer than {MAX_LABEL_LENGTH} characters")
    return text


@dataclass(frozen=True)
class LabelledImages:
    """Image files with their classes.

    Attributes:
        classes: class labels, sorted; ``targets`` index into it.
        paths: one entry per image.
        targets: the class index of each image.
        root: the folder the data came from, if any.
        empty_classes: class folders that hold no image files (not in ``classes``).
        skipped: files that were ignored because their extension is not an image type.
    """

    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    targets: tuple[int, ...]
    root: Path | None = None
    empty_classes: tuple[str, ...] = ()
    skipped: tuple[Path, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.targets):
            raise ConfigError(f"{len(self.paths)} images but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        tally = Counter(self.targets)
        return {label: tally.get(i, 0) for i, label in enumerate(self.classes)}

    def subset(self, indices: Sequence[int]) -> LabelledImages:
        """The same classes, keeping only the images at ``indices``."""
        return LabelledImages(
            classes=self.classes,
            paths=tuple(self.paths[i] for i in indices),
            targets=tuple(self.targets[i] for i in indices),
            root=self.root,
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (stored as the trained model's provenance)."""
        return {
            "root": str(self.root) if self.root is not None else None,
            "images": len(self.paths),
            "classes": self.counts(),
            "empty_classes": list(self.empty_classes),
            "skipped_non_image_files": len(self.skipped),
        }


def _visible(entries: Iterable[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _scan_class_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files (recursively, sorted by relative path) and skipped non-image files."""
    images: list[Path] = []
    skipped: list[Path] = []
    stack = [folder]
    seen: set[tuple[int, int]] = set()
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:  # a link loop
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = _visible(it)
        except OSError as exc:
            raise InputNotFoundError(f"cannot list folder {current}: {exc.strerror}") from None
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():
                subfolders.append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                skipped.append(path)
        stack.extend(reversed(subfolders))
    images.sort(key=lambda p: p.relative_to(folder).parts)
    return images, skipped


def discover_dataset(root: str | os.PathLike[str]) -> LabelledImages:
    """Read a folder-per-class data set (see the module docstring).

    Raises :class:`InputNotFoundError` when ``root`` is missing or has no class folders, and
    :class:`ConfigError` when two folder names are the same label once normalised.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise InputNotFoundError(f"{root_path}: no such folder")
    if not root_path.is_dir():
        raise InputNotFoundError(
            f"{root_path} is a file; give a folder with one subfolder of images per class"
        )
    with os.scandir(root_path) as it:
        entries = _visible(it)
    folders = [Path(e.path) for e in entries if e.is_dir()]
    loose = [Path(e.path) for e in entries if not e.is_dir()]
    if not folders:
        loose_images = sum(p.suffix.lower() in IMAGE_EXTENSIONS for p in loose)
        hint = (
            f" ({loose_images} image file(s) lie directly in it: move them into a folder named after their class)"
            if loose_images
            else ""
        )
        raise InputNotFoundError(
            f"{root_path} has no class folders{hint}; expected {root_path}/<class>/<images>"
        )

    classes: list[str] = []
    paths: list[Path] = []
    targets: list[int] = []
    empty: list[str] = []
    skipped: list[Path] = list(loose)
    by_label: dict[str, str] = {}
    for folder in folders:
        label = check_label(folder.name)
        if label in by_label:
            raise ConfigError(
                f"class folders {by_label[label]!r} and {folder.name!r} are the same label once "
                "Unicode-normalised; merge them"
            )
        by_label[label] = folder.name
        images, others = _scan_class_folder(folder)
        skipped.extend(others)
        if not images:
            empty.append(label)
            continue
        index = len(classes)
        classes.append(label)
        paths.extend(images)
        targets.extend([index] * len(images))
    return LabelledImages(
        classes=tuple(classes),
        paths=tuple(paths),
        targets=tuple(targets),
        root=root_path,
        empty_classes=tuple(empty),
        skipped=tuple(skipped),
    )


def labelled_images(
    data: str | os.PathLike[str] | LabelledImages | Mapping[str, Iterable[Any]] | Iterable[tuple[Any, str]],
) -> LabelledImages:
    """Accept every form the Python API takes for labelled data.

    * a folder path (folder-per-class, see :func:`discover_dataset`);
    * a :class:`LabelledImages` (returned as is);
    * a mapping ``{label: [image paths]}``;
    * an iterable of ``(image path, label)`` pairs.

    Labels given explicitly may contain any character except control characters (a slash too).
    """
    if isinstance(data, LabelledImages):
        return data
    if isinstance(data, (str, os.PathLike)):
        return discover_dataset(data)
    pairs: list[tuple[Path, str]] = []
    if isinstance(data, Mapping):
        for label, items in data.items():
            if isinstance(items, (str, os.PathLike)):
                raise ConfigError(f"class {label!r}: give a list of image paths, not a single string")
            pairs.extend((Path(item), label) for item in items)
        labels_given = [check_label(label) for label in data]
    else:
        for pair in data:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"expected (image path, label) pairs, got {pair!r}")
            pairs.append((Path(pair[0]), pair[1]))
        labels_given = []
    normalised = [(path, check_label(label)) for path, label in pairs]
    for path, _ in normalised:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; list image files, or pass the data set's root folder")
    classes = sorted({label for _, label in normalised})
    index = {label: i for i, label in enumerate(classes)}
    empty = tuple(sorted(set(labels_given) - set(classes)))
    return LabelledImages(
        classes=tuple(classes),
        paths=tuple(path for path, _ in normalised),
        targets=tuple(index[label] for _, label in normalised),
        empty_classes=empty,
    )
