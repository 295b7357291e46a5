"""How closely the int8 catalogue models follow their fp32 originals on every real photo the tests have.

For each ``efficientnet_lite<n>`` and its ``_int8`` variant (built from the shipped ranges if needed),
both classify the 102 photos of ``tests/real_photos.py`` (17 real photos, each as is, mirrored, two crops,
half size, quarter turn) the way ``tests/test_int8.py`` does (``Classifier.classify`` on arrays), and this
prints top-1 agreement on all photos and on the "clear" ones (fp32's top label leads its runner-up by
at least 0.05), the top-5 overlap, and every swap with fp32's lead — the figures the README quotes.

Both weight ranges: the int8 model built for this CPU (the catalogue's), and the one a CPU without
VNNI gets (``quantize.reduce_range_for_cpu``; built into a temporary folder). Their int8 arithmetic is
exact on both kinds of CPU (``scripts/check_int8_avx2.py``), so this machine measures both::

    python benchmarks/int8_agreement.py                 # Lite0, Lite1, Lite2 (Lite1/2: the lite12 extra)
    python benchmarks/int8_agreement.py --variants 0 --weights no-vnni
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_photos import photo_set
from sparkvision import Classifier
from sparkvision.models.quantize import quantize_model_dir, reduce_range_for_cpu, shipped_ranges
from sparkvision.models.store import build_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], choices=[0, 1, 2])
    parser.add_argument(
        "--weights",
        nargs="+",
        default=["this-cpu", "no-vnni"],
        choices=["this-cpu", "no-vnni"],
        help="the catalogue's int8 model (built for this CPU) and/or the one CPUs without VNNI get",
    )
    args = parser.parse_args()
    no_vnni = reduce_range_for_cpu(())
    print(f"this CPU's weight range: {reduce_range_for_cpu()!r}; without VNNI: {no_vnni!r}")
    scratch = tempfile.TemporaryDirectory(prefix="sparkvision-int8-agreement-")

    photos = photo_set()
    names = [name for name, _ in photos]
    images = [np.asarray(image) for _, image in photos]
    for variant in args.variants:
        model = f"efficientnet_lite{variant}"
        fp32_model = Classifier.pretrained(model)
        fp32 = list(fp32_model.classify(images, top_k=5))
        for weights in args.weights:
            if weights == "this-cpu":
                int8_model = Classifier.pretrained(f"{model}_int8")
            else:
                target = Path(scratch.name) / f"{model}_no_vnni"
                build_model_dir(
                    target,
                    lambda d, t=target.name, source=fp32_model.model_dir, m=model: quantize_model_dir(
                        source, shipped_ranges(m), d, name=t, reduce_range=no_vnni
                    ),
                )
                int8_model = Classifier(target)
            report(f"{model}_int8 ({weights})", names, fp32, list(int8_model.classify(images, top_k=5)))


def report(title: str, names: list[str], fp32: list, int8: list) -> None:
    """One line of figures, then every swap with fp32's lead."""
    lead = np.array([a.scores[0] - a.scores[1] for a in fp32])
    agree = np.array([a.class_ids[0] == b.class_ids[0] for a, b in zip(fp32, int8)])
    clear = lead >= 0.05
    in_top5 = np.mean([b.class_ids[0] in a.class_ids for a, b in zip(fp32, int8)])
    overlap = np.mean([len(set(a.class_ids) & set(b.class_ids)) / 5 for a, b in zip(fp32, int8)])
    print(
        f"{title}: top-1 agreement {agree.sum()}/{len(agree)} ({agree.mean():.3f}), "
        f"clear photos {agree[clear].sum()}/{clear.sum()}, int8 top-1 in fp32 top 5 {in_top5:.3f}, "
        f"top-5 overlap {overlap:.3f}"
    )
    for i in np.flatnonzero(~agree):
        print(f"    swap: {names[i]:<34} fp32 lead {lead[i]:.4f}  {fp32[i].label!r} -> {int8[i].label!r}")


if __name__ == "__main__":
    main()
