"""Test data for the Spark tests: real photos in awkward formats, broken files, tiny models."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tiny_models import TINY_LABELS, write_tiny_model  # noqa: F401  (re-exported for the Spark tests)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"


def rgba_png(path: Path) -> Path:
    """A real photo with a real alpha channel: a horizontal alpha ramp, fully transparent on the left."""
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((192, 160))
    alpha = np.tile(np.linspace(0, 255, photo.width).astype(np.uint8), (photo.height, 1))
    alpha[:, :24] = 0
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)
    return path


def gray_png(path: Path) -> Path:
    Image.open(EXAMPLES / "coffee.jpg").convert("L").resize((200, 150)).save(path)
    return path


def write_good_images(folder: Path) -> list[Path]:
    """Real photos as JPEG plus an RGBA PNG and a gray PNG (names sort in this order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        shutil.copy(EXAMPLES / "chelsea.jpg", folder / "a_chelsea.jpg"),
        shutil.copy(EXAMPLES / "rocket.jpg", folder / "b_rocket.jpg"),
        rgba_png(folder / "c_rgba.png"),
        gray_png(folder / "d_gray.png"),
    ]
    return [Path(p) for p in paths]


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A corrupt JPEG, an empty file and a truncated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    corrupt = folder / "e_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    empty = folder / "f_empty.png"
    empty.write_bytes(b"")
    truncated = folder / "g_truncated.jpg"
    data = (EXAMPLES / "coffee.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"corrupt": corrupt, "empty": empty, "truncated": truncated}


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
