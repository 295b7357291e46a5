"""Captioning speed: sparkvision (ONNX Runtime + NumPy) against transformers' ``generate()`` on torch CPU.

The model has the real shapes of ``nlpconnect/vit-gpt2-image-captioning`` — a ViT-B/16 encoder (224 px)
and a GPT-2 small decoder with cross-attention, vocabulary 50,257, start/end/padding token 50256 — with
random weights (no download). It is saved as a Hugging Face checkpoint, imported with
``sparkvision import``'s importer, and both sides caption the same photos (the examples, repeated)
with exactly ``--new-tokens`` new tokens, in batches of ``--batch-size`` images, on ``--threads``
threads. Each side's time includes reading and preprocessing the images (its own way). Both sides'
token ids are compared as a check. Then the decoder's per-token latency (one step with a past of
``--new-tokens / 2`` positions: one sequence, and a batch of images × beams) and the image encoder's
time per image, the two parts every caption pays.

Torch's OpenMP threads spin-wait between operations by default; on a machine whose cores are shared
that collapses its speed (one decoder step took 6.6 s), so run both sides with
``OMP_WAIT_POLICY=PASSIVE`` unless the cores are idle.

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
    print(f"{'search':<8} {'ours cap/s':>10} {'torch cap/s':>11} {'ratio':>6} {'same tokens':>12}")
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
        print(f"{name:<8} {ours:>10.2f} {theirs:>11.2f} {ours / theirs:>5.2f}× {same:>5}/{len(paths)}")
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


if __name__ == "__main__":
    main()
