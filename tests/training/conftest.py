"""Fixtures for the training and evaluation tests (data builders live in photo_dataset.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from photo_dataset import build_faces_dataset


@pytest.fixture(scope="session")
def faces_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train, val)`` folders: face / background / texture, validation from unseen photos."""
    return build_faces_dataset(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="session")
def hand_counted(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    """A tiny ImageNet-style folder whose lite0 predictions the evaluate test counts by hand."""
    root = tmp_path_factory.mktemp("hand_counted")
    layout = {
        "espresso": ["coffee.jpg"],  # first name of 'espresso'
        "tripod": ["camera.png"],
        "tiger_cat": ["chelsea.jpg"],  # normalised label 'tiger cat'
        "n02123045": ["chelsea.jpg"],  # synset of 'tabby, tabby cat'
        "missile": ["rocket.jpg"],
        "space shuttle": ["rocket.jpg"],
        "crane": ["rocket.jpg"],  # ambiguous: two ImageNet classes are called 'crane'
        "not_an_imagenet_class": ["astronaut.jpg"],
    }
    for folder, files in layout.items():
        (root / folder).mkdir()
        for name in files:
            shutil.copy(examples_dir / name, root / folder / name)
    (root / "missile" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "espresso" / "notes.txt").write_text("not an image, skipped")
    (root / "empty_class").mkdir()
    return root
