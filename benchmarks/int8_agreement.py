"""How closely the int8 catalogue models follow their fp32 originals on every real photo the tests have.

For each ``efficientnet_lite<n>`` and its ``_int8`` variant (built from the shipped ranges if needed),
both classify the 102 photos of ``tests/real_photos.py`` (17 real photos, each as is, mirrored, two crops,
half size, quarter turn) the way ``tests/test_int8.py`` does (``Classifier.classify`` on arrays), and this
prints top-1 agreement on all photos and on the "clear" ones (fp32's top label leads its runner-up by
at least 0.05), the top-5 overlap, and every swap with fp32's lead — the figures the README quotes::

    python benchmarks/int8_agreement.py                 # Lite0, Lite1, Lite2 (Lite1/2: the lite12 extra)
    python benchmarks/int8_agreement.py --variants 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_photos import photo_set
from sparkvision import Classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], choices=[0, 1, 2])
    args = parser.parse_args()

    photos = photo_set()
    names = [name for name, _ in photos]
    images = [np.asarray(image) for _, image in photos]
    for variant in args.variants:
        model = f"efficientnet_lite{variant}"
        fp32 = list(Classifier.pretrained(model).classify(images, top_k=5))
        int8 = list(Classifier.pretrained(f"{model}_int8").classify(images, top_k=5))
        lead = np.array([a.scores[0] - a.scores[1] for a in fp32])
        agree = np.array([a.class_ids[0] == b.class_ids[0] for a, b in zip(fp32, int8)])
        clear = lead >= 0.05
        in_top5 = np.mean([b.class_ids[0] in a.class_ids for a, b in zip(fp32, int8)])
        overlap = np.mean([len(set(a.class_ids) & set(b.class_ids)) / 5 for a, b in zip(fp32, int8)])
        print(
            f"{model}_int8: top-1 agreement {agree.sum()}/{len(agree)} ({agree.mean():.3f}), "
            f"clear photos {agree[clear].sum()}/{clear.sum()}, int8 top-1 in fp32 top 5 {in_top5:.3f}, "
            f"top-5 overlap {overlap:.3f}"
        )
        for i in np.flatnonzero(~agree):
            print(f"    swap: {names[i]:<34} fp32 lead {lead[i]:.4f}  {fp32[i].label!r} -> {int8[i].label!r}")


if __name__ == "__main__":
    main()
