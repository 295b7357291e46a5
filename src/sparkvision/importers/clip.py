"""Import a Hugging Face ``CLIPModel`` checkpoint as a zero-shot model (see :mod:`sparkvision.tasks.zero_shot`).

Writes ``model.onnx`` (image tower), ``text_model.onnx`` (text tower, ``input_ids`` padded to the
model's context length) and ``tokenizer.json`` (the checkpoint's tokenizer, saved by the tokenizers
backend so that the ``tokenizers`` package alone runs it). The import checks that our run-time
tokenization equals transformers' on a few prompts and that both graphs agree with torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelImportError
from ..models.spec import MODEL_FILE, ModelSpec
from ..preprocess import PreprocessSpec
from ..tasks.zero_shot import DEFAULT_PROMPT_TEMPLATE, TEXT_MODEL_FILE, TOKENIZER_FILE, prompts_for, tokenize
from .common import export_onnx, random_batch, require, save_tokenizer_json, sha256_files

__all__ = ["import_clip"]

_CHECK_PROMPTS = prompts_for(["cat", "dog", "hot-air balloon", "Ünïcode  spaces"], DEFAULT_PROMPT_TEMPLATE)


def import_clip(
    checkpoint: Path,
    directory: Path,
    *,
    name: str,
    weights: list[Path],
    preprocess: PreprocessSpec,
    model: Any,
    source: str,
    license: str,
) -> ModelSpec:
    """Export a loaded ``CLIPModel`` into ``directory``; returns the zero-shot spec."""
    torch = require("torch", "importing CLIP")
    from .wrappers import CLIPImageTower, CLIPTextTower

    tokenizer = save_tokenizer_json(
        checkpoint,
        directory / TOKENIZER_FILE,
        "a CLIP checkpoint",
        "tokenizer.json (or vocab.json + merges.txt)",
    )

    length = int(model.config.text_config.max_position_embeddings)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ModelImportError(f"{checkpoint}: the tokenizer has neither a padding nor an end-of-text token")
    extra = {
        "architecture": "CLIPModel",
        "importer": "huggingface",
        "prompt_template": DEFAULT_PROMPT_TEMPLATE,
        "logit_scale": float(model.logit_scale.detach().exp().item()),
        "text_model": TEXT_MODEL_FILE,
        "tokenizer": TOKENIZER_FILE,
        "max_text_length": length,
        "pad_token_id": int(pad_id),
    }
    spec = ModelSpec(
        name=name,
        family="clip",
        task="zero-shot",
        preprocess=preprocess,
        labels=(),
        activation="softmax",
        outputs=("embeddings",),
        source=source,
        license=license,
        weights_sha256=sha256_files(weights),
        extra=extra,
    )

    ours = tokenize(directory, spec, _CHECK_PROMPTS)
    theirs = tokenizer(_CHECK_PROMPTS, padding="max_length", max_length=length, truncation=True)["input_ids"]
    if not np.array_equal(ours, np.asarray(theirs, dtype=np.int64)):
        raise ModelImportError(
            f"{checkpoint}: the saved tokenizer does not reproduce transformers' token ids; this tokenizer "
            f"is not supported"
        )

    export_onnx(
        CLIPImageTower(model),
        random_batch(preprocess.size, 2),
        directory / MODEL_FILE,
        output_names=("embeddings",),
        check_batch=random_batch(preprocess.size, 3, seed=1),
    )
    export_onnx(
        CLIPTextTower(model),
        torch.from_numpy(ours[:2]),
        directory / TEXT_MODEL_FILE,
        input_name="input_ids",
        output_names=("text_embeddings",),
        check_batch=torch.from_numpy(ours[1:]),
    )
    return spec
