"""Captioning speed: sparkvision (ONNX Runtime + NumPy) against transformers' ``generate()`` on torch CPU.

The model has the real shapes of ``nlpconnect/vit-gpt2-image-captioning`` — a ViT-B/16 encoder (224 px)
and a GPT-2 small decoder with cross-attention, vocabulary 50,257, start/end/padding token 50256 — with
random weights (no download). It is saved as a Hugging Face checkpoint, imported with
``sparkvision import``'s importer, and both sides caption the same photos (the examples, repeated)
with exactly ``--new-tokens`` new tokens, in batches of ``--batch-size`` images, on ``--threads``
threads. Each side's time includes reading and preprocessing the images (its own way). Both sides'
token ids are compared as a check. Then the decoder's per-token latency (one step with a past of
``--new-tokens / 2`` positions: one sequence, and a batch of images × beams) and the image encoder's
time per image, the two parts every caption pays; last, where one batch's time goes on each side
(``--parts``: CPU seconds on one thread — encoder, first decoder step, the other steps, the rest — and
the ratio a free decoder would give, since encoder and first step are matrix products as fast on
both sides).

Torch is timed two ways: ``generate()`` on ``--threads`` intra-op threads, and (``--torch-lanes``,
the default with more than one thread) the way sparkvision itself runs a stream: one one-thread
process per core, each taking the next batch. The second is torch's best on this kind of machine;
the ratio against it is the honest one. Torch's OpenMP threads spin-wait between operations by
default; on a machine whose cores are shared that collapses the threaded run's speed (one decoder step
took 6.6 s), so run with ``OMP_WAIT_POLICY=PASSIVE`` unless the cores are idle (the lanes, one
thread each, do not spin).

    python benchmarks/caption.py                       # 50 photos, 16 new tokens, greedy and beam 3
    python benchmarks/caption.py --images 20 --threads 2 --workdir /tmp/caption-bench
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = sorted(p for p in (ROOT / "examples" / "images").iterdir() if p.suffix in {".jpg", ".png"})
VOCAB = 50257
END = VOCAB - 1


def _tokenizer() -> Any:
    """A byte-level tokenizer with GPT-2's vocabulary size and its single special token at 50256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for i in range(len(vocab), END):
        vocab[f"w{i}"] = i
    vocab["<|endoftext|>"] = END
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=special, eos_token=special, pad_token=special
    )


def build_checkpoint(directory: Path) -> Path:
    """ViT-B/16 + GPT-2 small with cross-attention, random weights, saved like the Hub repo."""
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    if (directory / "model.safetensors").is_file():
        return directory
    encoder = ViTConfig(
        image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12
    )
    decoder = GPT2Config(
        vocab_size=VOCAB, n_embd=768, n_layer=12, n_head=12, add_cross_attention=True, is_decoder=True,
        bos_token_id=END, eos_token_id=END, pad_token_id=END,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig(encoder=encoder.to_dict(), decoder=decoder.to_dict())
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = END
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config).eval()
    for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, END)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _tokenizer().save_pretrained(directory)
    ViTImageProcessor(
        size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(directory)
    return directory


def run_ours(
    model_dir: Path, paths: list[Path], options: dict[str, Any], batch: int, threads: int
) -> tuple[float, list]:
    from sparkvision.tasks.captioning import Captioner

    captioner = Captioner(model_dir, threads=threads)
    list(
        captioner.caption(paths[:2], batch_size=batch, **options)
    )  # warm-up: sessions, first-run allocations
    start = time.perf_counter()
    results = list(captioner.caption(paths, batch_size=batch, **options))
    seconds = time.perf_counter() - start
    assert all(r.ok for r in results)
    return len(paths) / seconds, [r.tokens[0] for r in results]


def run_torch(checkpoint: Path, paths: list[Path], options: dict[str, Any], batch: int) -> tuple[float, list]:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint)).eval()
    processor = AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil")

    def caption(chunk: list[Path]) -> list:
        images = [Image.open(p).convert("RGB") for p in chunk]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            rows = model.generate(pixel_values=pixels, **options).tolist()
        return [tuple(row[1:]) for row in rows]

    caption(paths[:2])  # warm-up
    start = time.perf_counter()
    tokens = []
    for i in range(0, len(paths), batch):
        tokens += caption(paths[i : i + batch])
    return len(paths) / (time.perf_counter() - start), tokens


_WORKER: dict[str, Any] = {}


def _torch_worker_start(checkpoint: str, warm: list[str], options: dict[str, Any], barrier: Any) -> None:
    """A torch lane: one thread, the model loaded and warmed up; waits for the other lanes."""
    import torch

    torch.set_num_threads(1)
    from PIL import Image
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    _WORKER["model"] = VisionEncoderDecoderModel.from_pretrained(checkpoint).eval()
    _WORKER["processor"] = AutoImageProcessor.from_pretrained(checkpoint, backend="pil")
    _WORKER["image"] = Image
    _torch_lane_batch(warm, options)
    barrier.wait()


def _torch_lane_batch(chunk: list[str], options: dict[str, Any]) -> tuple[list, float, float]:
    import torch

    start = time.perf_counter()
    images = [_WORKER["image"].open(p).convert("RGB") for p in chunk]
    pixels = _WORKER["processor"](images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        rows = _WORKER["model"].generate(pixel_values=pixels, **options).tolist()
    return [tuple(row[1:]) for row in rows], start, time.perf_counter()


def run_torch_lanes(
    checkpoint: Path, paths: list[Path], options: dict[str, Any], batch: int, lanes: int
) -> tuple[float, list]:
    """transformers ``generate()`` the way sparkvision runs a stream: ``lanes`` processes of one torch
    thread each, taking the next batch when free. On a small shared machine this is torch's fastest
    setting (no OpenMP synchronisation inside the small decoder operations); the time runs from the
    first batch's start to the last one's end."""
    import functools
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(lanes)
    chunks = [[str(p) for p in paths[i : i + batch]] for i in range(0, len(paths), batch)]
    warm = [str(p) for p in paths[:2]]
    with context.Pool(lanes, _torch_worker_start, (str(checkpoint), warm, options, barrier)) as pool:
        done = pool.map(functools.partial(_torch_lane_batch, options=options), chunks, chunksize=1)
    tokens = [row for rows, _, _ in done for row in rows]
    seconds = max(end for _, _, end in done) - min(start for _, start, _ in done)
    return len(paths) / seconds, tokens


def parts(model_dir: Path, checkpoint: Path, paths: list[Path], new_tokens: int, beams: int) -> None:
    """Where one batch's time goes, ours and torch's, on one thread, in CPU seconds of this process
    (the load of other processes does not count): the image encoder, the decoder's first step (for
    ours also every layer's cross-attention key/values; torch computes them in its first call too),
    the remaining steps, and everything else (search, logits processing, preprocessing is excluded)."""
    import collections

    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, VisionEncoderDecoderModel

    from sparkvision import generation
    from sparkvision.tasks.captioning import Captioner

    torch.set_num_threads(1)
    spent: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, int] = collections.defaultdict(int)

    def timed(name: str, function: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - start
                calls[name] += 1

        return run

    captioner = Captioner(model_dir, threads=1)
    runner = captioner.runner(1)
    runner.encode, runner.start, runner.step = (
        timed("encoder", runner.encode), timed("first", runner.start), timed("steps", runner.step)
    )  # fmt: skip
    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint)).eval()
    model.encoder.forward = timed("torch encoder", model.encoder.forward)
    model.decoder.forward = timed("torch decoder", model.decoder.forward)
    processor = AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil")
    pixels = processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")
    pixels = pixels["pixel_values"]
    config = captioner.generation_config(
        max_new_tokens=new_tokens, min_length=new_tokens + 1, num_beams=beams
    )
    best: dict[str, dict[str, float]] = {}
    for _ in range(3):  # the first round warms both up; the fastest round of each side is kept
        for side in ("ours", "torch"):
            spent.clear()
            calls.clear()
            start = time.process_time()
            if side == "ours":
                generation.generate(runner, pixels.numpy(), config)
            else:
                with torch.inference_mode():
                    model.generate(
                        pixel_values=pixels,
                        max_new_tokens=new_tokens,
                        min_new_tokens=new_tokens,
                        num_beams=beams,
                    )
            record = {
                "total": time.process_time() - start,
                **spent,
                **{f"{k} calls": v for k, v in calls.items()},
            }
            if side not in best or record["total"] < best[side]["total"]:
                best[side] = record
    ours, theirs = best["ours"], best["torch"]
    ms = 1000.0
    rest = ours["total"] - ours["encoder"] - ours["first"] - ours["steps"]
    print(
        f"  ours : {ms * ours['total']:6.0f} ms = encoder {ms * ours['encoder']:5.0f} + first step "
        f"{ms * ours['first']:4.0f} + {ours['steps calls']:.0f} steps {ms * ours['steps']:5.0f} "
        f"({ms * ours['steps'] / max(1, ours['steps calls']):.1f}/step) + rest {ms * rest:4.0f}"
    )
    calls_t = theirs["torch decoder calls"]
    rest_t = theirs["total"] - theirs["torch encoder"] - theirs["torch decoder"]
    print(
        f"  torch: {ms * theirs['total']:6.0f} ms = encoder {ms * theirs['torch encoder']:5.0f} + "
        f"{calls_t:.0f} decoder calls {ms * theirs['torch decoder']:5.0f} "
        f"({ms * theirs['torch decoder'] / max(1, calls_t):.1f}/call) + rest {ms * rest_t:4.0f}"
    )
    bound = theirs["total"] / (ours["encoder"] + ours["first"])
    print(
        f"  ratio {theirs['total'] / ours['total']:.2f}×; with free decoder steps and search it would be "
        f"{bound:.2f}× (encoder + first step are matrix products as fast as torch's)"
    )


def step_latency(
    model_dir: Path, checkpoint: Path, images: int, beams: int, past: int, threads: int, repeats: int = 12
) -> tuple[float, float]:
    """Median milliseconds of one decoder step for ``images`` × ``beams`` sequences with ``past`` cached
    positions, each side holding its cache as its own generation does: ours, torch."""
    import torch
    from transformers import VisionEncoderDecoderModel

    from sparkvision.generation import Seq2SeqRunner
    from sparkvision.models.store import load_model_dir

    spec = load_model_dir(model_dir)
    runner = Seq2SeqRunner(model_dir, spec.extra, threads)
    rows = images * beams
    rng = np.random.default_rng(0)
    pixels = rng.uniform(-1, 1, (images, 3, 224, 224)).astype(np.float32)
    states = runner.encode(pixels)
    ids = rng.integers(0, END, (images, past)).astype(np.int64)
    _, cache = runner.start(ids, states)
    cache = [
        entry if runner.shares_fixed and not moves else np.repeat(entry, beams, axis=0)
        for entry, moves in zip(cache, runner.moves_with_beam)
    ]
    step = np.full((rows, 1), 11, dtype=np.int64)
    ours = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.step(step, cache)
        ours.append(time.perf_counter() - start)

    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint)).eval()
    theirs = []
    with torch.inference_mode():
        hidden = torch.from_numpy(np.repeat(states, beams, axis=0))
        tokens = torch.from_numpy(np.repeat(ids, beams, axis=0))
        out = model.decoder(input_ids=tokens, encoder_hidden_states=hidden, use_cache=True)
        cache_t = getattr(out, "cache", None) or out.past_key_values
        for _ in range(repeats):
            trial = _copy_cache(cache_t)
            start = time.perf_counter()
            model.decoder(
                input_ids=torch.from_numpy(step), encoder_hidden_states=hidden, cache=trial, use_cache=True
            )
            theirs.append(time.perf_counter() - start)
    return 1000 * statistics.median(ours[2:]), 1000 * statistics.median(theirs[2:])


def encoder_latency(model_dir: Path, checkpoint: Path, images: int, threads: int) -> tuple[float, float]:
    """Median milliseconds per image of the image encoder on a batch of ``images``: ours, torch."""
    import torch
    from transformers import VisionEncoderDecoderModel

    from sparkvision.generation import Seq2SeqRunner
    from sparkvision.models.store import load_model_dir

    runner = Seq2SeqRunner(model_dir, load_model_dir(model_dir).extra, threads)
    pixels = np.random.default_rng(0).uniform(-1, 1, (images, 3, 224, 224)).astype(np.float32)
    model = VisionEncoderDecoderModel.from_pretrained(str(checkpoint)).eval()
    ours, theirs = [], []
    runner.encode(pixels)
    with torch.inference_mode():
        model.encoder(pixel_values=torch.from_numpy(pixels))
        for _ in range(3):
            start = time.perf_counter()
            runner.encode(pixels)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.encoder(pixel_values=torch.from_numpy(pixels))
            theirs.append(time.perf_counter() - start)
    return 1000 * statistics.median(ours) / images, 1000 * statistics.median(theirs) / images


def _copy_cache(cache: Any) -> Any:
    import copy

    return copy.deepcopy(cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--torch-lanes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time torch as one one-thread process per thread, batches shared (its best on few cores)",
    )
    parser.add_argument(
        "--parts", action=argparse.BooleanOptionalAction, default=True, help="time per part of one batch"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the checkpoint and model here between runs"
    )
    args = parser.parse_args()

    import onnxruntime
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="caption-bench-"))
    checkpoint = build_checkpoint(workdir / "checkpoint")
    model_dir = workdir / "model"
    if not (model_dir / "sparkvision.json").is_file():
        from sparkvision.importers import import_model

        started = time.perf_counter()
        import_model(checkpoint, "vit_gpt2_random", output_dir=model_dir)
        print(f"import: {time.perf_counter() - started:.0f} s")
    paths = [PHOTOS[i % len(PHOTOS)] for i in range(args.images)]
    print(
        f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{args.threads} threads, {args.images} photos, {args.new_tokens} new tokens, batch {args.batch_size}"
    )
    lanes = args.torch_lanes and args.threads > 1
    header = f"{'search':<8} {'ours cap/s':>10} {'torch cap/s':>11} {'ratio':>6} {'same tokens':>12}"
    if lanes:
        header += f" {'torch lanes cap/s':>17} {'ratio':>6} {'same':>5}"
    print(header)
    for beams in args.beams:
        options = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "num_beams": beams}
        ours_options = {
            "max_new_tokens": args.new_tokens,
            "min_length": args.new_tokens + 1,
            "num_beams": beams,
        }
        ours, our_tokens = run_ours(model_dir, paths, ours_options, args.batch_size, args.threads)
        theirs, their_tokens = run_torch(checkpoint, paths, options, args.batch_size)
        same = sum(a == b for a, b in zip(our_tokens, their_tokens))
        name = "greedy" if beams == 1 else f"beam {beams}"
        line = f"{name:<8} {ours:>10.2f} {theirs:>11.2f} {ours / theirs:>5.2f}× {same:>5}/{len(paths)}"
        if lanes:
            lane_speed, lane_tokens = run_torch_lanes(
                checkpoint, paths, options, args.batch_size, args.threads
            )
            lane_same = sum(a == b for a, b in zip(our_tokens, lane_tokens))
            line += f" {lane_speed:>17.2f} {ours / lane_speed:>5.2f}× {lane_same:>2}/{len(paths)}"
        print(line, flush=True)
    past = args.new_tokens // 2
    print(f"per-token decoder latency (one step, past {past}; torch's cache as generate() holds it):")
    for images, beams in [(1, 1), *((args.batch_size, b) for b in args.beams)]:
        ours_ms, torch_ms = step_latency(model_dir, checkpoint, images, beams, past, args.threads)
        print(
            f"  {images:>2} image(s) × {beams} beam(s): ours {ours_ms:7.1f} ms, torch {torch_ms:7.1f} ms "
            f"({torch_ms / ours_ms:.2f}×)"
        )
    ours_ms, torch_ms = encoder_latency(model_dir, checkpoint, args.batch_size, args.threads)
    print(
        f"image encoder, batch {args.batch_size}: ours {ours_ms:.0f} ms/image, torch {torch_ms:.0f} ms/image"
    )
    if args.parts:
        for beams in args.beams:
            name = "greedy" if beams == 1 else f"beam {beams}"
            print(f"time per part, {name}, one batch of {args.batch_size} photos, 1 thread, CPU time:")
            parts(model_dir, checkpoint, paths[: args.batch_size], args.new_tokens, beams)


if __name__ == "__main__":
    main()
