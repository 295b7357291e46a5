"""ONNX Runtime speed of the converted EfficientNet-Lite models alone (no decoding, no preprocessing).

This is the ceiling the end-to-end path is measured against: images/s for pre-made float32 tensors, per
variant and batch size, median of a few timed runs after a warm-up. The models are built in memory from
the installed weight packages (no cache directory involved). Session options match ``sparkvision.engine``:
full graph optimisation, sequential execution, ``--threads`` intra-op threads.

    python benchmarks/engine_only.py                      # lite0/1/2 at batch 1, 8, 32 with 2 threads
    python benchmarks/engine_only.py --variants 0 --batch-sizes 16 64 --threads 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from sparkvision.models.efficientnet_lite import VARIANTS, build_onnx, weights_path
from sparkvision.models.torch_legacy import load_torch_state_dict


def _session(variant: int, threads: int) -> ort.InferenceSession:
    model = build_onnx(variant, load_torch_state_dict(weights_path(variant)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def images_per_second(
    session: ort.InferenceSession, batch: np.ndarray, repeats: int, min_images: int
) -> float:
    """Median images/s over ``repeats`` timed runs, each running at least ``min_images`` images."""
    calls = max(1, -(-min_images // len(batch)))
    session.run(["logits"], {"pixel_values": batch})  # warm-up: first-run allocations and kernel selection
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            session.run(["logits"], {"pixel_values": batch})
        rates.append(calls * len(batch) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], choices=sorted(VARIANTS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting; the median is shown")
    parser.add_argument(
        "--min-images", type=int, default=32, help="images per timed run (at least one batch)"
    )
    args = parser.parse_args()

    print(f"onnxruntime {ort.__version__}, {args.threads} intra-op threads, median of {args.repeats} runs")
    print(f"{'model':<20} {'size':>4} {'batch':>5} {'img/s':>8} {'ms/img':>7}")
    rng = np.random.default_rng(0)
    for variant in args.variants:
        info = VARIANTS[variant]
        session = _session(variant, args.threads)
        for batch_size in args.batch_sizes:
            size = info.image_size
            batch = rng.uniform(-1.0, 1.0, (batch_size, 3, size, size)).astype(np.float32)
            rate = images_per_second(session, batch, args.repeats, args.min_images)
            print(f"{info.name:<20} {size:>4} {batch_size:>5} {rate:>8.1f} {1000 / rate:>7.2f}")


if __name__ == "__main__":
    main()
