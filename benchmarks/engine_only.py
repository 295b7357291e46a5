"""ONNX Runtime speed of the converted EfficientNet-Lite models alone (no decoding, no preprocessing).

This is the ceiling the end-to-end path is measured against: images/s for pre-made float32 tensors, per
variant and batch size, median of a few timed runs after a warm-up. The models are built in memory from
the installed weight packages (no cache directory involved). Session options match ``sparkvision.engine``:
full graph optimisation, sequential execution, ``--threads`` intra-op threads.

    python benchmarks/engine_only.py                      # lite0/1/2 at batch 1, 8, 32 with 2 threads
    python benchmarks/engine_only.py --variants 0 --batch-sizes 16 64 --threads 4
    python benchmarks/engine_only.py --int8 --batch-sizes 16 --threads 1   # + the int8 catalogue models

``--int8`` also times each model's int8 catalogue variant (``efficientnet_lite<n>_int8``, built into the
model cache from the shipped ranges if needed), alternating fp32 and int8 runs so that both see the same
load, and prints the int8/fp32 speed ratio.
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


def _int8_session(variant: int, threads: int) -> ort.InferenceSession:
    from sparkvision.models.catalogue import resolve_model

    model_dir, _ = resolve_model(f"{VARIANTS[variant].name}_int8")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])


def images_per_second(
    sessions: list[ort.InferenceSession], batch: np.ndarray, repeats: int, min_images: int
) -> list[float]:
    """Median images/s of each session over ``repeats`` rounds (the sessions take turns within a
    round), each timed run running at least ``min_images`` images."""
    calls = max(1, -(-min_images // len(batch)))
    for session in sessions:  # warm-up: first-run allocations and kernel selection
        session.run(["logits"], {"pixel_values": batch})
    rates: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for session, session_rates in zip(sessions, rates):
            start = time.perf_counter()
            for _ in range(calls):
                session.run(["logits"], {"pixel_values": batch})
            session_rates.append(calls * len(batch) / (time.perf_counter() - start))
    return [statistics.median(r) for r in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], choices=sorted(VARIANTS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting; the median is shown")
    parser.add_argument(
        "--min-images", type=int, default=32, help="images per timed run (at least one batch)"
    )
    parser.add_argument("--int8", action="store_true", help="also time the int8 catalogue variants")
    args = parser.parse_args()

    print(f"onnxruntime {ort.__version__}, {args.threads} intra-op threads, median of {args.repeats} runs")
    print(f"{'model':<25} {'size':>4} {'batch':>5} {'img/s':>8} {'ms/img':>7}")
    rng = np.random.default_rng(0)
    for variant in args.variants:
        info = VARIANTS[variant]
        sessions = [_session(variant, args.threads)]
        names = [info.name]
        if args.int8:
            sessions.append(_int8_session(variant, args.threads))
            names.append(f"{info.name}_int8")
        for batch_size in args.batch_sizes:
            size = info.image_size
            batch = rng.uniform(-1.0, 1.0, (batch_size, 3, size, size)).astype(np.float32)
            rates = images_per_second(sessions, batch, args.repeats, args.min_images)
            for name, rate in zip(names, rates):
                print(f"{name:<25} {size:>4} {batch_size:>5} {rate:>8.1f} {1000 / rate:>7.2f}")
            if args.int8:
                print(f"{'int8 / fp32':<25} {'':>4} {batch_size:>5} {rates[1] / rates[0]:>7.2f}x")


if __name__ == "__main__":
    main()
