"""A tiny random ``VisionEncoderDecoderModel`` (ViT encoder + GPT-2 decoder) saved as a Hugging Face
checkpoint, with a byte-level BPE tokenizer trained here on a few captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = sorted((ROOT / "examples" / "images").glob("*.[jp][pn]g"))

CAPTIONS = [
    "a cat lying on a blanket next to a remote control",
    "an astronaut in a white suit holding a helmet",
    "a rocket standing on the launch pad under a cloudy sky",
    "a cup of coffee with a saucer on a wooden table",
    "a man holding a camera on a tripod in a field",
    "two dogs running across the grass in a park",
]
BOS, EOS, PAD = "<|caption|>", "<|end|>", "<|pad|>"


def train_tokenizer() -> Any:
    """A GPT-2-style byte-level BPE tokenizer with distinct start, end and padding tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CAPTIONS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def build_checkpoint(
    directory: Path,
    *,
    image_size: int = 224,
    patch_size: int = 32,
    encoder_width: int = 32,
    decoder_width: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_length: int = 16,
    init_range: float = 0.2,
    eos_scale: float = 8.0,
    seed: int = 0,
) -> Path:
    """Write a random ViT + GPT-2 captioning checkpoint (``save_pretrained`` layout) into ``directory``."""
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tokenizer = train_tokenizer()
    encoder = ViTConfig(
        image_size=image_size, patch_size=patch_size, hidden_size=encoder_width, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * encoder_width, initializer_range=init_range,
    )  # fmt: skip
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=decoder_width, n_layer=layers, n_head=heads,
        add_cross_attention=True, is_decoder=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, initializer_range=init_range,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig(encoder=encoder.to_dict(), decoder=decoder.to_dict())
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    with torch.no_grad():  # a larger end-token embedding (tied to the output layer): captions of many lengths
        model.decoder.get_input_embeddings().weight[tokenizer.eos_token_id] *= eos_scale
    model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.max_length = max_length
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor.save_pretrained(directory)
    return directory
