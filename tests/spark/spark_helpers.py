"""Test data for the Spark tests: real photos in awkward formats, broken files, tiny models."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tiny_models import TINY_LABELS, write_tiny_model  # noqa: F401  (re-exported for the Spark tests)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"


def rgba_png(path: Path) -> Path:
    """A real photo with a real alpha channel: a horizontal alpha ramp, fully transparent on the left."""
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((192, 160))
    alpha = np.tile(np.linspace(0, 255, photo.width).astype(np.uint8), (photo.height, 1))
    alpha[:, :24] = 0
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)
    return path


def gray_png(path: Path) -> Path:
    Image.open(EXAMPLES / "coffee.jpg").convert("L").resize((200, 150)).save(path)
    return path


def write_good_images(folder: Path) -> list[Path]:
    """Real photos as JPEG plus an RGBA PNG and a gray PNG (names sort in this order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        shutil.copy(EXAMPLES / "chelsea.jpg", folder / "a_chelsea.jpg"),
        shutil.copy(EXAMPLES / "rocket.jpg", folder / "b_rocket.jpg"),
        rgba_png(folder / "c_rgba.png"),
        gray_png(folder / "d_gray.png"),
    ]
    return [Path(p) for p in paths]


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A corrupt JPEG, an empty file and a truncated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    corrupt = folder / "e_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    empty = folder / "f_empty.png"
    empty.write_bytes(b"")
    truncated = folder / "g_truncated.jpg"
    data = (EXAMPLES / "coffee.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"corrupt": corrupt, "empty": empty, "truncated": truncated}


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


PRE_CLIP = {"feature_extractor_type": "CLIPFeatureExtractor", "crop_size": 224, "do_center_crop": True,
            "do_normalize": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}  # fmt: skip


def tiny_clip_checkpoint(directory: Path) -> Path:
    """A randomly initialised CLIPModel with CLIP's tokenizer structure (byte-level BPE, tiny vocab)."""
    import torch
    import transformers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    merges = [("a", "t</w>"), ("c", "at</w>"), ("p", "h"), ("ph", "o"), ("t", "o</w>"), ("pho", "to</w>")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=merges)
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 224, "patch_size": 32}  # fmt: skip
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    model = transformers.CLIPModel(config).eval()
    model.logit_scale.data.fill_(math.log(100.0))  # the trained CLIP's scale: scores far from flat
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PRE_CLIP))
    return directory
