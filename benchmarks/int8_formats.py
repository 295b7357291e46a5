"""int8 schemes side by side: QDQ vs QOperator (and optionally 7-bit weights), model only and end to end.

Builds each scheme from the cached fp32 EfficientNet-Lite model and the shipped activation ranges
into a temporary cache, then measures, alternating the schemes within every round (so a noisy machine
slows all alike), medians of ``--rounds``:

* model only, ``--threads`` intra-op threads, batch 16 (one batch gets every core), and one thread
  (what each lane of a folder run uses);
* end to end: ``Classifier.classify(folder)`` on the benchmark JPEG folder;
* top-1 agreement of each scheme's outputs with fp32 on that folder.

Run it on each machine kind before changing the default scheme (``sparkvision.models.quantize``)::

    python benchmarks/int8_formats.py --count 200 --rounds 5
    python benchmarks/int8_formats.py --reduce-range      # also the 7-bit-weight variants
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import make_jpeg_folder

from sparkvision import Classifier
from sparkvision.engine import Engine, default_threads
from sparkvision.models.catalogue import resolve_model
from sparkvision.models.quantize import quantize_model_dir, shipped_ranges
from sparkvision.models.spec import MODEL_FILE
from sparkvision.models.store import build_model_dir


def build_schemes(model: str, root: Path, reduce_range: bool) -> dict[str, Path]:
    source, _ = resolve_model(model)
    ranges = shipped_ranges(model)
    schemes = {"fp32": source}
    variants = [(f, False) for f in ("qdq", "qoperator")]
    if reduce_range:
        variants += [(f, True) for f in ("qdq", "qoperator")]
    for quant_format, reduced in variants:
        name = f"{model}_{quant_format}" + ("_7bit" if reduced else "")
        target = root / name
        build_model_dir(
            target,
            lambda d, f=quant_format, r=reduced, n=name: quantize_model_dir(
                source, ranges, d, name=n, quant_format=f, reduce_range=r
            ),
        )
        schemes[name.removeprefix(model + "_")] = target
    return schemes


def model_only(schemes: dict[str, Path], threads: int, rounds: int, size: int) -> dict[str, float]:
    engines = {k: Engine(p / MODEL_FILE, threads) for k, p in schemes.items()}
    batch = np.random.default_rng(0).standard_normal((16, 3, size, size)).astype(np.float32)
    for engine in engines.values():
        engine.run(batch)
    rates: dict[str, list[float]] = {k: [] for k in schemes}
    for r in range(rounds):
        for k in list(engines) if r % 2 == 0 else list(engines)[::-1]:
            started = time.perf_counter()
            for _ in range(8):
                engines[k].run(batch)
            rates[k].append(128 / (time.perf_counter() - started))
    return {k: statistics.median(v) for k, v in rates.items()}


def end_to_end(
    schemes: dict[str, Path], folder: Path, rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    classifiers = {k: Classifier(p) for k, p in schemes.items()}
    top1 = {k: [p.class_ids[0] for p in c.classify(folder, top_k=1)] for k, c in classifiers.items()}
    agreement = {k: float(np.mean(np.array(v) == np.array(top1["fp32"]))) for k, v in top1.items()}
    rates: dict[str, list[float]] = {k: [] for k in schemes}
    for r in range(rounds):
        for k in list(classifiers) if r % 2 == 0 else list(classifiers)[::-1]:
            started = time.perf_counter()
            n = sum(1 for p in classifiers[k].classify(folder, top_k=5) if p.ok)
            rates[k].append(n / (time.perf_counter() - started))
    return {k: statistics.median(v) for k, v in rates.items()}, agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--reduce-range", action="store_true", help="also 7-bit weights")
    args = parser.parse_args()

    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    print(f"CPU: {'VNNI' if vnni else 'no VNNI'}; threads={args.threads}")
    with tempfile.TemporaryDirectory(prefix="sparkvision-int8-") as tmp:
        schemes = build_schemes(args.model, Path(tmp), args.reduce_range)
        size = Classifier(schemes["fp32"]).spec.preprocess.size
        many = model_only(schemes, args.threads, args.rounds, size)
        one = model_only(schemes, 1, args.rounds, size)
        folder = make_jpeg_folder(args.count)
        e2e, agreement = end_to_end(schemes, folder, args.rounds)
    print(
        f"{'scheme':16s} {'model, all cores':>17s} {'model, 1 thread':>16s} {'end to end':>11s} {'top-1 = fp32':>13s}"
    )
    for k in schemes:
        print(
            f"{k:16s} {many[k]:10.1f} img/s {one[k]:9.1f} img/s {e2e[k]:5.1f} img/s {agreement[k]:12.3f}"
            f"   ({many[k] / many['fp32']:.2f}× / {one[k] / one['fp32']:.2f}× / {e2e[k] / e2e['fp32']:.2f}×)"
        )


if __name__ == "__main__":
    main()
