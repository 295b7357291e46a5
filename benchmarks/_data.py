"""Benchmark inputs: a deterministic folder of real-size JPEGs made from the example photos.

The photos (scikit-image's sample images, in ``examples/images``) are resized so that their long side
spans 300–2000 px, lightly cropped and flipped so no two files are identical, and saved as JPEG at
quality 90 — the kind of folder a user points the tool at.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"
DEFAULT_DIR = ROOT / "bench-data"


def make_jpeg_folder(
    count: int, folder: Path | None = None, *, min_side: int = 300, max_side: int = 2000
) -> Path:
    """Create (once) ``count`` JPEGs in ``folder`` and return it."""
    folder = folder or DEFAULT_DIR / f"jpegs-{count}-{min_side}-{max_side}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    photos = [
        Image.open(p).convert("RGB") for p in sorted(EXAMPLES.iterdir()) if p.suffix in {".jpg", ".png"}
    ]
    for i in range(count):
        photo = photos[i % len(photos)]
        long_side = rng.randint(min_side, max_side)
        scale = long_side / max(photo.size)
        w, h = photo.size
        crop = rng.uniform(0.85, 1.0)
        cw, ch = int(w * crop), int(h * crop)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = photo.crop((left, top, left + cw, top + ch))
        image = image.resize((max(1, int(cw * scale)), max(1, int(ch * scale))), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image.save(folder / f"img_{i:05d}.jpg", quality=90)
    done.touch()
    return folder
