"""int8 vs fp32 agreement on ONNX Runtime's AVX2 (no VNNI) kernels, under QEMU user-mode emulation.

ONNX Runtime picks its int8 kernels by CPU: with VNNI (``avx512_vnni`` / ``avx_vnni``) a u8×s8 dot
product accumulates in 32 bits (``VPDPBUSD``); on AVX2-only CPUs (and AVX-512 without VNNI) it uses
``VPMADDUBSW``, which adds two u8×s8 products into a *saturating* 16-bit lane first. An int8 model
can therefore be accurate on one machine and not on another. Lacking an AVX2-only machine, this
script runs the same model files under ``qemu-x86_64 -cpu Haswell-noTSX`` (AVX2, FMA, no AVX-512,
no VNNI; QEMU ≥ 7.2 emulates AVX2), where ONNX Runtime's CPU detection takes the AVX2 path, and
natively, and compares:

* each int8 scheme with the fp32 model, per run (native, emulated): top-1 agreement (on all photos,
  and on the "clear" ones, where fp32's top label leads by 0.05 or more), mean top-5 overlap, how
  often int8's top label is in fp32's top 5, mean cosine of the logits, on every real photo the
  tests have (``tests/real_photos.py``);
* each model with itself across the two runs (bit-identical? largest logit difference).

The photos are decoded and preprocessed once, natively; only ONNX Runtime runs under emulation
(one thread). Emulated *time* means nothing (TCG is one to two orders of magnitude slower than the
real CPU); only the outputs are compared.

Needs ``qemu-user`` (Debian: ``apt-get install qemu-user``)::

    nice -n 10 python scripts/check_int8_avx2.py --model efficientnet_lite0
    python scripts/check_int8_avx2.py --schemes qdq,qdq_7bitdense,qdq_7bit,qdq_u8u8,qoperator --fp32-photos 1
    python scripts/check_int8_avx2.py --model efficientnet_lite2 --schemes qdq,qdq_pairs --stride 6

Schemes: ``qdq`` / ``qoperator`` (format), then options: ``7bit`` (7-bit weights everywhere),
``7bitdense`` (7-bit except depthwise convolutions: session 6's choice without VNNI), ``pairs`` (8-bit,
neighbouring input-channel pairs within 128 steps in the dense layers: the rule's choice without VNNI
since session 7), ``u8u8`` (uint8 weights).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: QEMU CPU model: Haswell without TSX (TCG lacks TSX): AVX2 + FMA + F16C, no AVX-512, no VNNI.
DEFAULT_QEMU_CPU = "Haswell-noTSX"


def _worker(inputs: Path, output: Path, fp32_photos: int, models: list[str]) -> None:
    """Run each model on the preprocessed batch (one image at a time, one thread) and save the logits;
    the first model (fp32) only on the first ``fp32_photos`` images. Imports only NumPy and ONNX
    Runtime: this is what runs under emulation."""
    import onnxruntime as ort

    batch = np.load(inputs)
    results: dict[str, np.ndarray] = {}
    for i, model in enumerate(models):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        images = batch[:fp32_photos] if i == 0 else batch
        started = time.perf_counter()
        results[f"m{i}"] = np.concatenate([session.run(None, {name: image[None]})[0] for image in images])
        print(
            f"  {Path(model).parent.name}: {len(images)} photos, {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    np.savez(output, **results)


def cpu_flags(prefix: list[str]) -> dict[str, bool]:
    """The CPU features NumPy's own CPUID probe reports in a process started with ``prefix``."""
    code = (
        "import json; from numpy._core._multiarray_umath import __cpu_features__ as f; "
        "print(json.dumps({k: f[k] for k in ('AVX2', 'FMA3', 'AVX512F', 'AVX512VNNI', 'AVX512_SPR')}))"
    )
    out = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_schemes(model: str, root: Path, schemes: list[str]) -> dict[str, Path]:
    """fp32 plus each int8 scheme (``qdq``, ``qoperator``, ``*_7bit``, ``*_u8u8``), built with the
    project's quantizer from the shipped activation ranges."""
    from sparkvision.models.catalogue import resolve_model
    from sparkvision.models.quantize import quantize_model_dir, shipped_ranges
    from sparkvision.models.spec import MODEL_FILE
    from sparkvision.models.store import build_model_dir

    source, _ = resolve_model(model)
    ranges = shipped_ranges(model)
    files = {"fp32": source / MODEL_FILE}
    for scheme in schemes:
        quant_format, *options = scheme.split("_")
        target = root / f"{model}_{scheme}"
        if not target.exists():
            build_model_dir(
                target,
                lambda d, f=quant_format, o=options, n=target.name: quantize_model_dir(
                    source,
                    ranges,
                    d,
                    name=n,
                    quant_format=f,  # type: ignore[arg-type]
                    reduce_range="pairs" if "pairs" in o else "dense" if "7bitdense" in o else "7bit" in o,
                    **({"weight_type": "uint8"} if "u8u8" in o else {}),
                ),
            )
        files[scheme] = target / MODEL_FILE
    return files


def photos_batch(model: str, limit: int | None, stride: int = 1) -> tuple[list[str], np.ndarray]:
    """Every real test photo (102), preprocessed for ``model`` exactly as the classifier does."""
    sys.path.insert(0, str(ROOT / "tests"))
    from real_photos import photo_set
    from sparkvision.models.catalogue import resolve_model
    from sparkvision.models.store import load_model_dir
    from sparkvision.preprocess import preprocess_batch

    spec = load_model_dir(resolve_model(model)[0])
    photos = photo_set()[::stride][:limit]
    return [name for name, _ in photos], preprocess_batch([image for _, image in photos], spec.preprocess)


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    top5_ref, top5 = np.argsort(-reference, axis=1)[:, :5], np.argsort(-other, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5)]
    cosine = np.sum(reference * other, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    )
    probabilities = np.exp(reference - reference.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    ranked = np.sort(probabilities, axis=1)
    clear = (
        ranked[:, -1] - ranked[:, -2] >= 0.05
    )  # fp32's top label leads by 0.05 or more (as tests/test_int8.py)
    agree = top5_ref[:, 0] == top5[:, 0]
    return {
        "top1_agreement": float(np.mean(agree)),
        "top1_agreement_clear": float(np.mean(agree[clear])),
        "clear_photos": int(clear.sum()),
        "top5_overlap": float(np.mean(overlap)),
        "int8_top1_in_fp32_top5": float(np.mean([b[0] in a for a, b in zip(top5_ref, top5)])),
        "cosine": float(np.mean(cosine)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument(
        "--schemes", default="qdq", help="comma-separated: qdq, qoperator, qdq_7bit, qdq_u8u8, ..."
    )
    parser.add_argument("--cpu", default=DEFAULT_QEMU_CPU, help="QEMU CPU model (AVX2, no VNNI)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--stride", type=int, default=1, help="only every N-th photo")
    parser.add_argument(
        "--fp32-photos",
        type=int,
        default=3,
        help="emulate the fp32 model on only this many photos (TCG emulates FMA in software: ~80 s a photo)",
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the built models here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--model-dirs", type=Path, nargs="*", default=[], help="also these int8 model directories of --model"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(Path(args.worker[0]), Path(args.worker[1]), int(args.worker[2]), args.worker[3:])
        return

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("qemu-x86_64 not found (Debian: apt-get install qemu-user)")
    runs: dict[str, list[str]] = {"native": [], "avx2 (emulated)": [qemu, "-cpu", args.cpu]}
    for run, prefix in runs.items():
        print(f"{run}: CPU features NumPy sees: {cpu_flags(prefix)}")

    work = args.work or Path(tempfile.mkdtemp(prefix="sparkvision-avx2-"))
    work.mkdir(parents=True, exist_ok=True)
    files = build_schemes(args.model, work, [s for s in args.schemes.split(",") if s])
    files |= {directory.name: directory / "model.onnx" for directory in args.model_dirs}
    names, batch = photos_batch(args.model, args.limit, args.stride)
    inputs = work / f"{args.model}_inputs.npy"
    np.save(inputs, batch)

    logits: dict[str, dict[str, np.ndarray]] = {}
    for run, prefix in runs.items():
        output = work / f"{args.model}_{run.split()[0]}.npz"
        print(f"{run}: {len(names)} photos × {len(files)} models …", flush=True)
        started = time.perf_counter()
        with subprocess.Popen(
            [
                *prefix,
                sys.executable,
                __file__,
                "--worker",
                str(inputs),
                str(output),
                str(len(names) if not prefix else args.fp32_photos),
                *map(str, files.values()),
            ],
            stderr=subprocess.PIPE,
            text=True,
        ) as worker:
            assert worker.stderr is not None
            for line in worker.stderr:  # QEMU warns about every feature of the CPU model TCG lacks (TSX...)
                if not line.startswith("qemu-x86_64: warning:"):
                    print(line, end="", flush=True)
        if worker.returncode:
            sys.exit(f"{run} run failed ({worker.returncode})")
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        with np.load(output) as data:
            logits[run] = {scheme: data[f"m{i}"] for i, scheme in enumerate(files)}

    native, emulated = logits["native"], logits["avx2 (emulated)"]
    k = len(emulated["fp32"])
    fp32_same = bool(np.array_equal(native["fp32"][:k], emulated["fp32"]))
    figures: dict[str, object] = {
        "model": args.model,
        "photos": len(names),
        "qemu_cpu": args.cpu,
        "fp32_emulated_photos": k,
        "fp32_bit_identical_emulated_vs_native": fp32_same,
    }
    print(
        f"\nfp32, emulated vs native on the first {k} photos: "
        f"{'bit-identical' if fp32_same else 'DIFFERENT'} "
        f"(max |Δlogit| {float(np.abs(native['fp32'][:k] - emulated['fp32']).max()):.3g}); "
        "the native fp32 logits are the reference for both runs"
    )
    reference = native["fp32"]
    print(f"\n{args.model}, {len(names)} photos; each int8 scheme vs fp32:")
    print(
        f"{'scheme':17s} {'run':16s} {'top-1 agr.':>10s} {'clear':>7s} {'top-5 ovl.':>10s} {'top1∈top5':>10s} "
        f"{'cosine':>8s}"
    )
    for scheme in files:
        if scheme == "fp32":
            continue
        for run in runs:
            c = compare(reference, logits[run][scheme])
            figures[f"{scheme} vs fp32, {run}"] = c
            print(
                f"{scheme:17s} {run:16s} {c['top1_agreement']:10.3f} {c['top1_agreement_clear']:7.3f} "
                f"{c['top5_overlap']:10.3f} "
                f"{c['int8_top1_in_fp32_top5']:10.3f} {c['cosine']:8.4f}"
            )
    print("\neach int8 model, emulated AVX2 vs native:")
    for scheme in files:
        if scheme == "fp32":
            continue
        a, b = native[scheme], emulated[scheme]
        diff = float(np.abs(a - b).max())
        same_top1 = float(np.mean(a.argmax(1) == b.argmax(1)))
        figures[f"{scheme}, emulated vs native"] = {
            "bit_identical": bool(np.array_equal(a, b)),
            "max_abs_diff": diff,
            "top1_agreement": same_top1,
        }
        print(
            f"{scheme:17s} bit-identical={np.array_equal(a, b)!s:5s} max |Δlogit|={diff:.3g} "
            f"top-1 agreement={same_top1:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
