"""Decode + preprocess core time per photo: the two decode modes and the candidates we measured.

One thread, CPU time per image (``time.process_time``, so other processes on a shared machine count
less), medians over alternating rounds, on two folders of real-photo JPEGs made from the example
photos (``_data.make_jpeg_folder``): ImageNet-sized (long side about 500, like a validation photo) and
camera-sized (long side 2500-4000); ``--mixed N`` adds throughput.py's folder (long side 300-2000).
Every candidate returns the model's float32 input. Candidates:

* ``fast``       — ``decode="fast"`` (the default): a plain JPEG goes straight from libjpeg-turbo
  (``simplejpeg``, strict) into an RGBX array (``images.decode_pixels``), at a reduced DCT scale while
  the short side stays >= 3 × the resize target, then ``preprocess.resample_crop`` reads the array in
  place: Pillow's filter as NumPy matrix products over the crop window only, rounded between the
  passes as Pillow does, normalised on the way out;
* ``issue-time`` — the fixed baseline of issue 15 (the path when the issue was filed): Pillow decode,
  ``draft`` while the short side stays >= 2 × the resize target, Pillow resize of the whole image,
  crop, then the normalisation of that time (a mixed uint8 × float32 multiply, which NumPy runs
  through its buffered float64 loop);
* ``pillow-numpy`` — the fast mode before session 7: Pillow decode and draft (2 ×), then
  ``resample_crop`` on the Pillow image (its crop window copied out as RGBX);
* ``pillow-window`` — the fast mode before ``resample_crop``: the same draft, Pillow resampling only
  the crop window (``resize(box=...)``), today's normalisation;
* ``draft-2x`` / ``draft-3x`` / ``draft-4x`` — ``fast``'s decoder and resampler with the DCT scale
  chosen for a short side >= 2 / 3 / 4 × the resize target (3 × is the default: see ``--agreement``);
* ``turbo`` — simplejpeg called directly (no header checks, no EXIF) at ``fast``'s scale, then the
  resampler: the floor of ``fast``'s decoding overhead;
* ``turbo-fastdct`` / ``turbo-fastup`` / ``turbo-fast-both`` — rejected: the same with libjpeg-turbo's
  fast integer IDCT and/or its fast (non-"fancy") chroma upsampling: 2-5 % less time, top-1
  agreement with exact 0.96-0.98;
* ``eighths-2x`` / ``eighths-3x`` — rejected: libjpeg-turbo's M/8 DCT scales (3/8, 5/8... no SIMD
  IDCT), the smallest keeping the short side >= 2 / 3 × the target: lower agreement than halvings;
* ``gap-2``      — rejected: Pillow's ``reducing_gap=2`` resize (a box ``reduce`` first); after the
  draft the factor is below 4, so it only adds a whole-image pass;
* ``exact``      — ``decode="exact"``: full Pillow decode, resize then crop like the reference;
* ``dct-1x``     — rejected: JPEG draft down to the resize target itself (changes top labels, README);
* ``opencv``     — rejected: simplejpeg + ``cv2.resize`` INTER_AREA (only when OpenCV is installed;
  a 60 MB wheel, and its resampling differs from Pillow's, which the models were evaluated with).

``--agreement MODEL...`` instead prints each model's top-1 agreement of ``fast`` (and of the
``--variants``) with ``exact`` on every JPEG of the folders plus the tests' 102 real photos at three
sizes (their own, long side 500, long side 3000): 586 JPEGs with ``--mixed 200``.

Measured and not kept as candidates: NumPy passes on RGB
arrays (the horizontal pass as a right-hand product with narrow blocks runs at a fifth of BLAS's
speed; transposing three-float pixels costs more than the product), BLAS products above 2^18
multiply-adds (OpenBLAS hands them to its thread pool: 50× slower a call on a busy machine), and
libjpeg's fast IDCT without fancy upsampling (``decoderconfig``: 4 % faster, pixels up to 28 levels
off).

    python benchmarks/decode.py                  # 60 + 20 photos, 5 rounds
    python benchmarks/decode.py --count 60 --large 10 --mixed 100 --rounds 7 \
        --only issue-time pillow-numpy draft-2x turbo
    python benchmarks/decode.py --mixed 200 --agreement efficientnet_lite0 efficientnet_lite1 \
        efficientnet_lite2 --variants draft-2x
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DEFAULT_DIR, make_jpeg_folder

from sparkvision import Classifier
from sparkvision.images import DecodedPixels, decode_image, decode_pixels
from sparkvision.preprocess import PreprocessSpec, preprocess, resize_and_crop
from sparkvision.results import PreparedImage
from sparkvision.tasks.base import draft_short_side


def candidates(spec: PreprocessSpec, model_dir: Path) -> dict[str, Callable[[Path], np.ndarray]]:
    fast = Classifier(model_dir, decode="fast")
    exact = Classifier(model_dir, decode="exact")
    draft = draft_short_side(spec)  # 3x the resize target
    draft2 = 2 * spec.resize_short_side  # the rule before session 7

    def issue_time(path: Path) -> np.ndarray:
        d = decode_image(path, min_short_side=draft2)
        pixels = np.asarray(resize_and_crop(d.image, spec), dtype=np.uint8)
        out = np.empty((3, spec.size, spec.size), dtype=np.float32)
        np.multiply(pixels.transpose(2, 0, 1), spec._scale, out=out, casting="unsafe")
        out += spec._shift
        return out

    def pillow_numpy(path: Path) -> np.ndarray:
        d = decode_image(path, min_short_side=draft2)
        return preprocess(d.image, spec, fast=True)

    def pillow_window(path: Path) -> np.ndarray:
        d = decode_image(path, min_short_side=draft2)
        return preprocess(d.image, spec, window=True)

    def dct_1x(path: Path) -> np.ndarray:
        d = decode_image(path, min_short_side=spec.resize_short_side)
        return preprocess(d.image, spec, window=True)

    def reducing_gap(path: Path) -> np.ndarray:
        d = decode_image(path, min_short_side=draft2)
        new_w, new_h = spec.resize_shape(*d.image.size)
        image = d.image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=2.0)
        return preprocess(image.crop(spec.crop_box(new_w, new_h)), spec)

    def drafted(times: int) -> Callable[[Path], np.ndarray]:
        def run(path: Path) -> np.ndarray:
            d = decode_pixels(path, min_short_side=times * spec.resize_short_side)
            return preprocess(d.pixels if isinstance(d, DecodedPixels) else d.image, spec, fast=True)

        return run

    def turbo(**flags: bool) -> Callable[[Path], np.ndarray]:
        def run(path: Path) -> np.ndarray:
            data = path.read_bytes()
            h, w = simplejpeg.decode_jpeg_header(data)[:2]
            scale = next(s for s in (8, 4, 2, 1) if s <= min(h, w) // draft) if min(h, w) >= 2 * draft else 1
            rgbx = simplejpeg.decode_jpeg(
                data, "RGBX", min_height=-(-h // scale), min_width=-(-w // scale), **flags
            )
            return preprocess(rgbx, spec, fast=True)

        return run

    def eighths(times: float) -> Callable[[Path], np.ndarray]:
        """libjpeg-turbo's M/8 DCT scales (3/8, 5/8...: no SIMD IDCT), short side >= times x target."""

        def run(path: Path) -> np.ndarray:
            data = path.read_bytes()
            h, w = simplejpeg.decode_jpeg_header(data)[:2]
            need = int(times * spec.resize_short_side)
            rgbx = simplejpeg.decode_jpeg(
                data, "RGBX", min_height=need if h <= w else 0, min_width=need if w < h else 0
            )
            return preprocess(rgbx, spec, fast=True)

        return run

    found: dict[str, Callable[[Path], np.ndarray]] = {
        "fast": lambda p: fast.prepare(p).pixels,
        "issue-time": issue_time,
        "pillow-numpy": pillow_numpy,
        "pillow-window": pillow_window,
        "exact": lambda p: exact.prepare(p).pixels,
        "draft-2x": drafted(2),
        "draft-3x": drafted(3),
        "draft-4x": drafted(4),
        "eighths-2x": eighths(2),
        "eighths-3x": eighths(3),
        "turbo": turbo(),
        "turbo-fastdct": turbo(fastdct=True),
        "turbo-fastup": turbo(fastupsample=True),
        "turbo-fast-both": turbo(fastdct=True, fastupsample=True),
        "gap-2": reducing_gap,
        "dct-1x": dct_1x,
    }
    try:
        import cv2
    except ImportError:
        return found
    cv2.setNumThreads(1)

    def opencv(path: Path) -> np.ndarray:
        data = path.read_bytes()
        rgb = simplejpeg.decode_jpeg(data, "RGB")
        new_w, new_h = spec.resize_shape(rgb.shape[1], rgb.shape[0])
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        left, top, right, bottom = spec.crop_box(new_w, new_h)
        out = np.empty((3, spec.size, spec.size), np.float32)
        np.multiply(
            resized[top:bottom, left:right].transpose(2, 0, 1), spec._scale, out=out, casting="unsafe"
        )
        out += spec._shift
        return out

    found["opencv"] = opencv
    return found


def measure(
    files: list[Path], runs: dict[str, Callable[[Path], np.ndarray]], rounds: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up (imports, sessions)
        run(files[0])
    for r in range(rounds):
        order = list(runs.items()) if r % 2 == 0 else list(reversed(runs.items()))
        for name, run in order:
            started = time.process_time()
            for path in files:
                run(path)
            times[name].append((time.process_time() - started) / len(files) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def photo_jpegs() -> Path:
    """The tests' 102 real photos and variations (``tests/real_photos.py``) as JPEGs (quality 90) at
    three sizes: their own, long side 500 (ImageNet-sized) and long side 3000 (camera-sized: drafted)."""
    folder = DEFAULT_DIR / "photo-set-3-sizes"
    if (folder / ".complete").exists():
        return folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from real_photos import photo_set

    folder.mkdir(parents=True, exist_ok=True)
    for i, (_, image) in enumerate(photo_set()):
        for tag, long_side in (("own", 0), ("500", 500), ("3000", 3000)):
            if long_side:
                scale = long_side / max(image.size)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image_at = image.resize(size, Image.Resampling.BICUBIC)
            else:
                image_at = image
            image_at.save(folder / f"photo_{i:03d}_{tag}.jpg", quality=90)
    (folder / ".complete").touch()
    return folder


def agreement(names: list[str], folders: dict[str, Path], variants: list[str]) -> None:
    """Top-1 agreement with exact of fast (and of the named candidates) on every photo, per model."""
    for name in names:
        exact = Classifier.pretrained(name, decode="exact")
        spec = exact.spec.preprocess
        runs = candidates(spec, exact.model_dir)
        files = [f for folder in folders.values() for f in sorted(folder.glob("*.jpg"))]
        exact_top = np.array([r.class_ids[0] for r in exact.classify_batch(files, top_k=1)])
        for variant in ["fast", *variants]:
            prepared = [PreparedImage(runs[variant](f), 0, 0, spec) for f in files]
            top = np.array([r.class_ids[0] for r in exact.classify_batch(prepared, top_k=1)])
            same, start = top == exact_top, 0
            parts = []
            for title, folder in folders.items():
                n = len(list(folder.glob("*.jpg")))
                parts.append(f"{title.split(' (')[0]} {int(same[start : start + n].sum())}/{n}")
                start += n
            print(
                f"{name}, {variant}: agrees with exact on the top label of {int(same.sum())}/{len(files)} "
                f"({same.mean():.4f}; " + ", ".join(parts) + ")",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="ImageNet-sized photos")
    parser.add_argument("--large", type=int, default=20, help="camera-sized photos")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--mixed", type=int, default=0, help="also the throughput.py folder (long side 300-2000), this many"
    )
    parser.add_argument("--only", nargs="+", help="candidates to run (default: all)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument(
        "--agreement",
        nargs="+",
        metavar="MODEL",
        help="instead of timing: fast vs exact top-1 for these models, on the folders and the tests' "
        "102 photos at three sizes",
    )
    parser.add_argument(
        "--variants", nargs="*", default=[], help="with --agreement: candidates to check as well as fast"
    )
    args = parser.parse_args()

    model = Classifier.pretrained(args.model)
    runs = candidates(model.spec.preprocess, model.model_dir)
    if args.only:
        runs = {name: run for name, run in runs.items() if name in {"fast", *args.only}}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    folders = {
        "ImageNet-sized (long side 500)": make_jpeg_folder(args.count, min_side=500, max_side=500),
        "camera-sized (long side 2500-4000)": make_jpeg_folder(args.large, min_side=2500, max_side=4000),
    }
    if args.mixed:
        folders["throughput.py's photos (long side 300-2000)"] = make_jpeg_folder(args.mixed)
    if args.agreement:
        folders["the tests' 102 photos at three sizes"] = photo_jpegs()
        agreement(args.agreement, folders, args.variants)
        return
    for title, folder in folders.items():
        files = sorted(folder.glob("*.jpg"))
        medians = measure(files, runs, args.rounds)
        base = medians["fast"]
        print(f"{title}, {len(files)} JPEGs, ms of CPU per photo (median of {args.rounds} rounds):")
        for name, value in medians.items():
            print(f"  {name:13s} {value:7.2f} ms   {value / base:5.2f} × fast")
        if "issue-time" in medians:
            print(f"  fast / issue-time = {base / medians['issue-time']:.2f}")


if __name__ == "__main__":
    main()
