"""The two decode modes: ``exact`` reproduces the reference preprocessing for every image; ``fast`` (the
default) decodes large JPEGs at a reduced DCT scale and resamples only the crop window with NumPy
(``preprocess.resample_crop``) — within two levels of ``exact`` on a few values below twice the resize
size, and the same top label on real photos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from real_photos import photo_paths, photo_set
from sparkvision import Classifier
from sparkvision.cli import cli
from sparkvision.errors import ConfigError
from sparkvision.images import decode_image
from sparkvision.tasks.base import draft_short_side


def jpeg(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def imagenet_sized() -> list[bytes]:
    """Every real photo as a ~500×375 JPEG (the size of an ImageNet validation photo)."""
    out = []
    for path in photo_paths():
        image = Image.open(path).convert("RGB")
        image.thumbnail((500, 500), Image.Resampling.LANCZOS)
        out.append(jpeg(image))
    return out


def reference(data: bytes, size: int, crop_pct: float) -> np.ndarray:
    """timm / torchvision evaluation transform for EfficientNet-Lite, written out: Pillow decode,
    short side to floor(size / crop_pct) bicubic, centre crop (offsets rounded), (x/255 − 0.5)/0.5."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    short = int(size / crop_pct)
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float64)
    return ((pixels / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def test_exact_mode_reproduces_the_reference(lite0: Classifier, imagenet_sized: list[bytes]) -> None:
    exact = Classifier(lite0.model_dir, decode="exact")
    big = jpeg(Image.open(photo_paths()[0]).resize((2400, 2400)))
    for data in [*imagenet_sized[:6], big]:
        got = exact.prepare(data).pixels
        np.testing.assert_allclose(got, reference(data, 224, 0.875), atol=1e-6, rtol=0)


def test_fast_mode_differs_from_exact_by_float_rounding_at_imagenet_size(
    lite0: Classifier, imagenet_sized: list[bytes]
) -> None:
    """Below twice the resize size nothing is drafted; fast resamples only the crop window, in float
    where Pillow uses fixed-point weights: at most 2 levels on fewer than 1 value in 1,000 (measured:
    up to 7 in 10,000, 2 levels on one photo, 1 elsewhere)."""
    exact = Classifier(lite0.model_dir, decode="exact")
    level = 2 / 255  # (x / 255 - 0.5) / 0.5
    changed = []
    for data in imagenet_sized:
        diff = np.abs(lite0.prepare(data).pixels - exact.prepare(data).pixels)
        assert diff.max() <= 2 * level + 1e-6
        changed.append(np.mean(diff > 1e-6))
    assert max(changed) < 1e-3 and sum(changed) > 0  # rounding moved some values, very few


def test_fast_mode_reduces_a_large_jpeg(lite0: Classifier) -> None:
    spec = lite0.spec.preprocess
    data = jpeg(Image.open(photo_paths()[0]).resize((2560, 1708)))  # short side 1708
    drafted = decode_image(data, min_short_side=draft_short_side(spec))
    # halved to 854 (>= 2 × the 256 resize; a quarter, 427, would be below)
    assert (
        drafted.reduced
        and drafted.image.size == (1280, 854)
        and (drafted.width, drafted.height) == (2560, 1708)
    )
    fast, exact = lite0.prepare(data), Classifier(lite0.model_dir, decode="exact").prepare(data)
    assert (fast.width, fast.height) == (exact.width, exact.height) == (2560, 1708)
    assert 0 < np.abs(fast.pixels - exact.pixels).mean() < 0.02  # close, not identical


@pytest.mark.slow
def test_fast_mode_keeps_the_top_label_of_exact(lite0: Classifier, imagenet_sized: list[bytes]) -> None:
    """Every real photo at ImageNet size and at camera size (long side 3000). Where exact's top label
    leads its runner-up by 0.05 or more, fast agrees (>= 99 %: all of them); everywhere fast's top
    label is one of exact's first two. (Near-ties can swap on the large copies — Chelsea the cat is
    "Egyptian cat" 0.37 / "tiger cat" 0.36.)"""
    exact = Classifier(lite0.model_dir, decode="exact")
    large = []
    for data in imagenet_sized:
        image = Image.open(io.BytesIO(data))
        scale = 3000 / max(image.size)
        large.append(jpeg(image.resize((round(image.width * scale), round(image.height * scale)))))
    photos = imagenet_sized + large
    fast_top = list(lite0.classify_batch(photos, top_k=2))
    exact_top = list(exact.classify_batch(photos, top_k=2))
    clear = [e.scores[0] - e.scores[1] >= 0.05 for e in exact_top]
    agree = [f.class_ids[0] == e.class_ids[0] for f, e in zip(fast_top, exact_top)]
    assert sum(clear) >= 14
    assert np.mean([a for a, c in zip(agree, clear) if c]) >= 0.99
    assert all(f.class_ids[0] in e.class_ids for f, e in zip(fast_top, exact_top))
    assert np.mean(agree) >= 0.9


@pytest.mark.slow
def test_fast_resampling_keeps_the_top_label_on_every_real_photo(lite0: Classifier) -> None:
    """The 102 real photos and variations, in memory (so nothing is drafted: this is the NumPy
    resampler alone): fast and exact give the same top label (measured 102/102 for Lite0 and Lite2,
    101/102 for Lite1: a near-tie)."""
    images = [image for _, image in photo_set()]
    exact = Classifier(lite0.model_dir, decode="exact")
    fast_top = [r.class_ids[0] for r in lite0.classify_batch(images, top_k=1)]
    exact_top = [r.class_ids[0] for r in exact.classify_batch(images, top_k=1)]
    assert np.mean([f == e for f, e in zip(fast_top, exact_top)]) >= 0.99


def test_decode_option_is_checked_and_reaches_the_cli(examples_dir: Path, lite0: Classifier) -> None:
    with pytest.raises(ConfigError, match="decode"):
        Classifier(lite0.model_dir, decode="quick")
    runner = CliRunner()
    args = ["classify", str(examples_dir / "coffee.jpg"), "-f", "jsonl", "-q"]
    fast = runner.invoke(cli, args)
    exact = runner.invoke(cli, [*args, "--decode", "exact"])
    assert fast.exit_code == exact.exit_code == 0
    assert '"espresso"' in fast.output and '"espresso"' in exact.output
