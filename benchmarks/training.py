"""What training costs, and which head to use: embedding time, head-fitting time, held-out accuracy.

In one run, on this machine:

  (1) embedding: EfficientNet-Lite0 over a folder of real-size JPEGs (long side 300–2000 px, the
      throughput benchmark's folder) with the embedding cache cold, then warm; the baseline is plain
      ``Classifier.classify`` over the same files (embedding costs what classifying costs);
  (2) head fitting per 1,000 training images, for the scikit-learn L-BFGS head and the numpy Adam head,
      on the real embeddings of (1) (5 classes: which example photo a file was cut from) and on
      5,000 / 20,000 embeddings resampled from them with noise (to see how it scales);
  (3) accuracy on held-out *source photos* (the test suite's face / background / texture set), the
      measurement behind the default head;
  (4) fusing the head into the ONNX model.

Prints a table and the load average before and after (the machine may be shared: the numbers are
honest only next to it).

    python benchmarks/training.py              # 300 JPEGs
    python benchmarks/training.py --count 500
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "training"))
from _data import make_jpeg_folder  # noqa: E402
from photo_dataset import build_faces_dataset  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.engine import default_threads  # noqa: E402
from sparkvision.training import (  # noqa: E402
    EmbeddingCache,
    LinearHead,
    discover_dataset,
    embed_files,
    fit_head,
    fuse_head,
)


def per_thousand(seconds: float, n: int) -> float:
    return seconds / n * 1000


def measure_embedding(clf: Classifier, files: list[Path], cache_file: Path) -> dict[str, float]:
    list(clf.classify(files[:8], batch_size=8))  # session warm-up
    started = time.perf_counter()
    classified = sum(1 for p in clf.classify(files, top_k=5) if p.ok)
    classify_s = time.perf_counter() - started
    with EmbeddingCache(cache_file) as cache:
        cold = embed_files(clf, files, cache=cache)
        warm = embed_files(clf, files, cache=cache)
    assert classified == len(files) and cold.computed == len(files) and warm.from_cache == len(files)
    return {
        "classify_s_per_1000": per_thousand(classify_s, len(files)),
        "embed_cold_s_per_1000": per_thousand(cold.seconds, len(files)),
        "embed_warm_s_per_1000": per_thousand(warm.seconds, len(files)),
        "vectors": cold.vectors,  # type: ignore[dict-item]
    }


def resample(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(y), n)
    noise = rng.normal(0, x.std(axis=0).mean() * 0.5, size=(n, x.shape[1])).astype(np.float32)
    return x[pick] + noise, y[pick]


def measure_heads(x: np.ndarray, y: np.ndarray, classes: int) -> list[tuple[str, int, float, float | None]]:
    for kind in ("logistic", "softmax"):  # warm-up: imports (scikit-learn takes seconds) are not fitting
        fit_head(x[:20], y[:20], classes, kind=kind, epochs=5)  # type: ignore[arg-type]
    rows = []
    for n in (len(y), 5000, 20000):
        xs, ys = (x, y) if n == len(y) else resample(x, y, n)
        cut = int(len(ys) * 0.8)
        for kind in ("logistic", "softmax"):
            fit = fit_head(xs[:cut], ys[:cut], classes, xs[cut:], ys[cut:], kind=kind)  # type: ignore[arg-type]
            rows.append((kind, cut, per_thousand(fit.seconds, cut), fit.val_accuracy))
    return rows


def held_out_accuracy(clf: Classifier, root: Path, cache_file: Path) -> list[tuple[str, float, float]]:
    train_dir, val_dir = build_faces_dataset(root)
    train, val = discover_dataset(train_dir), discover_dataset(val_dir)
    with EmbeddingCache(cache_file) as cache:
        xt = embed_files(clf, list(train.paths), cache=cache).vectors
        xv = embed_files(clf, list(val.paths), cache=cache).vectors
    rows = []
    for kind in ("logistic", "softmax"):
        fit = fit_head(xt, train.targets, len(train.classes), xv, val.targets, kind=kind)  # type: ignore[arg-type]
        rows.append((kind, float(fit.val_accuracy or 0.0), fit.seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300, help="JPEGs to embed (default 300)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    clf = Classifier.pretrained("efficientnet_lite0")
    folder = make_jpeg_folder(args.count)
    files = sorted(folder.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        emb = measure_embedding(clf, files, tmp_path / "bench.sqlite")
        x = emb.pop("vectors")
        y = np.arange(len(files)) % 5  # the example photo each file was cut from
        heads = measure_heads(x, y, 5)
        accuracy = held_out_accuracy(clf, tmp_path / "faces", tmp_path / "faces.sqlite")
        head = LinearHead(weight=np.zeros((5, x.shape[1])), bias=np.zeros(5))
        started = time.perf_counter()
        fuse_head(clf.model_dir / "model.onnx", head, tmp_path / "fused.onnx")
        fuse_s = time.perf_counter() - started
    load_after = os.getloadavg()

    print(
        f"machine: {os.cpu_count()} CPUs, ORT threads {default_threads()}; load average before "
        f"{load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)"
    )
    print(f"\nembedding ({len(files)} JPEGs, long side 300–2000 px, EfficientNet-Lite0):")
    print(f"  classify (baseline)      {emb['classify_s_per_1000']:7.1f} s per 1,000 images")
    print(
        f"  embed, cache cold        {emb['embed_cold_s_per_1000']:7.1f} s per 1,000 images "
        f"({emb['embed_cold_s_per_1000'] / emb['classify_s_per_1000']:.2f}× classify)"
    )
    print(f"  embed, cache warm        {emb['embed_warm_s_per_1000']:7.2f} s per 1,000 images")
    print("\nhead fitting (80 % train / 20 % val, 1280-d embeddings, 5 classes):")
    for kind, n, seconds, acc in heads:
        print(f"  {kind:<9} {n:>6} train images  {seconds:6.2f} s per 1,000 images   val acc {acc:.3f}")
    print("\nheld-out source photos (face / background / texture; 180 train, 100 val):")
    for kind, acc, seconds in accuracy:
        print(f"  {kind:<9} val accuracy {acc:.3f}   fit {seconds:.2f} s")
    print(f"\nfusing the head into the ONNX model: {fuse_s:.2f} s")


if __name__ == "__main__":
    main()
