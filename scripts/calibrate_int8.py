"""Measure the int8 activation ranges shipped for the EfficientNet-Lite models.

Writes ``src/sparkvision/data/int8/efficientnet_lite{0,1,2}.json``: for every activation tensor of the
fp32 model, its range on about a hundred real photos (the range whose 8-bit round trip loses least in
squared error over the values the photos gave it; ``--method average``: session 6's averaged batch
extremes; see ``sparkvision.models.quantize.collect_ranges``), for the input of every convolution and of
the classifier the mean of each channel (for bias correction), and the few nodes that stay in float
(``FLOAT_NODES``). With those ranges the catalogue's ``efficientnet_lite*_int8`` models are built on the
user's machine from the fp32 model alone (see ``sparkvision.models.quantize``); no calibration image is
needed there.

The photos are ones anyone can obtain, all CC0 or public domain: the bundled ``examples/images``
(scikit-image's sample photos), more of scikit-image's sample data (a motorcycle, the Hubble deep field, a
retina, coins, microscopy, grass, gravel, brick, the moon), scikit-learn's two sample photos (a
Chinese temple, a flower) and matplotlib's Grace Hopper portrait. Each is used as is, mirrored, cropped
(centre 70 %, and a random 60-90 % window, mirrored) and downscaled (long side 400 px), so the ranges
cover several framings and scales. Needs the test extra (scikit-image, scikit-learn, matplotlib)::

    python scripts/calibrate_int8.py                    # all three models
    python scripts/calibrate_int8.py --models efficientnet_lite0
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "src" / "sparkvision" / "data" / "int8"
EXAMPLES = ROOT / "examples" / "images"
SKIMAGE_PHOTOS = (
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "coins.png",
    "ihc.png",
    "grass.png",
    "gravel.png",
    "brick.png",
    "moon.png",
)
DESCRIPTION = (
    "examples/images, scikit-image sample photos (motorcycle_left, hubble_deep_field, retina, coins, "
    "ihc, grass, gravel, brick, moon), scikit-learn china/flower, matplotlib grace_hopper; each as is, "
    "mirrored, centre-cropped 70 %, randomly cropped 60-90 % and mirrored, downscaled to 400 px "
    "(scripts/calibrate_int8.py)"
)
#: Nodes of the EfficientNet-Lite graphs kept in float: the stem and the first block (their 32-channel
#: activations at half the input resolution are the ones whose 8-bit rounding costs the most agreement
#: with fp32 — together far more than one at a time) and the global average pooling. Chosen on half of
#: the test photos, confirmed on the other half; their cost is within the noise of a paired timing
#: (docs/performance.md, session 6). The classifier stays int8: in float it gained nothing measurable
#: and would add its 5 MB of float weights.
FLOAT_NODES = ("_conv_stem", "_blocks.0._depthwise_conv", "_blocks.0._project_conv", "pool")


def source_photos() -> list[Path]:
    import matplotlib
    import skimage
    import sklearn

    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    photos += [Path(skimage.__file__).parent / "data" / name for name in SKIMAGE_PHOTOS]
    photos += [Path(sklearn.__file__).parent / "datasets" / "images" / n for n in ("china.jpg", "flower.jpg")]
    photos.append(Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    missing = [p for p in photos if not p.is_file()]
    if missing:
        sys.exit(f"missing calibration photos: {', '.join(map(str, missing))}")
    return photos


def variants(photo: Path, rng: random.Random) -> Iterator[Image.Image]:
    image = Image.open(photo).convert("RGB")
    w, h = image.size
    yield image
    yield ImageOps.mirror(image)
    yield ImageOps.crop(image, (int(w * 0.15), int(h * 0.15)))
    c = rng.uniform(0.6, 0.9)
    cw, ch = int(w * c), int(h * c)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    yield ImageOps.mirror(image.crop((left, top, left + cw, top + ch)))
    scale = 400 / max(w, h)
    if scale < 1:
        yield image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)


def calibration_images() -> list[Image.Image]:
    rng = random.Random(2026)
    return [v for photo in source_photos() for v in variants(photo, rng)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[f"efficientnet_lite{v}" for v in range(3)],
        help="fp32 catalogue models",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--method",
        choices=["mse", "average"],
        default="mse",
        help="how each tensor's range is chosen (average: session 6's averaged batch extremes)",
    )
    parser.add_argument(
        "--float-nodes", nargs="*", default=list(FLOAT_NODES), help="nodes to keep in float (none: all int8)"
    )
    args = parser.parse_args()

    from sparkvision.models.catalogue import resolve_model
    from sparkvision.models.quantize import collect_ranges

    images = calibration_images()
    args.output.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        started = time.perf_counter()
        model_dir, _ = resolve_model(name)
        ranges = collect_ranges(
            model_dir, images, calibration=DESCRIPTION, float_nodes=args.float_nodes, method=args.method
        )
        path = ranges.save(args.output / f"{name}.json")
        print(
            f"{name}: {len(ranges.ranges)} tensors from {ranges.images} images -> {path} "
            f"({path.stat().st_size / 1024:.1f} KiB) in {time.perf_counter() - started:.0f} s"
        )


if __name__ == "__main__":
    main()
