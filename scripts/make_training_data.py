"""Write the data sets of the training guide (docs/training.md) from photos that ship with scikit-image.

No download: every image comes from ``skimage.data`` (installed with ``pip install scikit-image``; the
``test`` extra has it) or from ``examples/images``. Writes, under the folder given (default ``data``):

* ``train/`` and ``val/``: three classes no ImageNet label names — ``face`` and ``background`` (the LFW
  faces and non-face patches of ``skimage.data.lfw_subset()``) and ``texture`` (crops of the brick and
  grass photos for training, of the gravel photo for validation). 180 training and 100 validation
  images; every validation image comes from a photo no training image was cut from. The test suite
  trains on the same set (``tests/training/photo_dataset.py`` builds both).
* ``imagenet_val/``: the example photos in ImageNet-named class folders (synset id, label with ``_``,
  first name, an ambiguous ``crane``) plus a one-byte ``broken.jpg``: what ``sparkvision evaluate``
  does with each kind of folder and file.

::

    python scripts/make_training_data.py            # into ./data
    python scripts/make_training_data.py /tmp/data  # elsewhere
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "images"

#: folder -> example photos copied into it (folder names as a user would write them).
IMAGENET_LAYOUT: dict[str, tuple[str, ...]] = {
    "espresso": ("coffee.jpg",),  # a label's first name
    "tripod": ("camera.png",),  # the exact label
    "tiger_cat": ("chelsea.jpg",),  # the label "tiger cat", with "_" for the space
    "n02123045": ("chelsea.jpg",),  # a synset id ("tabby, tabby cat")
    "missile": ("rocket.jpg",),
    "space_shuttle": ("rocket.jpg",),
    "crane": ("rocket.jpg",),  # ambiguous: ImageNet has two "crane" classes (bird, machine)
}


def write_imagenet_val(folder: Path) -> Path:
    """The example photos in ImageNet-named class folders, plus one unreadable file."""
    for name, photos in IMAGENET_LAYOUT.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for photo in photos:
            shutil.copyfile(EXAMPLES / photo, folder / name / photo)
    (folder / "missile" / "broken.jpg").write_bytes(b"\x00")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", nargs="?", type=Path, default=Path("data"), help="where to write (default: data)"
    )
    args = parser.parse_args()
    wanted = [args.folder / name for name in ("train", "val", "imagenet_val")]
    existing = [folder for folder in wanted if folder.exists()]
    if existing == wanted:  # built before (the README and the guide both ask for it): keep it as it is
        print(f"{', '.join(map(str, wanted))} already exist; left as they are")
        return 0
    if existing:
        print(f"error: {', '.join(map(str, existing))} already exist(s); remove them first", file=sys.stderr)
        return 2
    try:
        sys.path.insert(0, str(ROOT / "tests" / "training"))
        from photo_dataset import build_faces_dataset
    except ImportError as exc:
        print(f"error: this needs scikit-image ({exc}): pip install scikit-image", file=sys.stderr)
        return 2
    train, val = build_faces_dataset(args.folder)
    imagenet_val = write_imagenet_val(args.folder / "imagenet_val")
    for folder in (train, val, imagenet_val):
        counts = {c.name: sum(1 for _ in c.iterdir()) for c in sorted(folder.iterdir())}
        print(f"{folder}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
