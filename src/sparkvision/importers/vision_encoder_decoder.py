"""Import a local Hugging Face ``VisionEncoderDecoderModel`` checkpoint as a captioning model.

A checkpoint such as ``nlpconnect/vit-gpt2-image-captioning`` (``config.json`` with ``model_type``
``vision-encoder-decoder``) becomes a model directory with ``task: "captioning"``:

* ``model.onnx``: ``pixel_values`` → ``encoder_hidden_states`` (run once per image);
* ``decoder_model.onnx``: the first decoder step, ``input_ids`` + ``encoder_hidden_states`` → ``logits``
  and every layer's key/values (``present.{i}.decoder.*`` self-attention, ``present.{i}.encoder.*``
  cross-attention). Given a whole sequence it is also the decoder without cache;
* ``decoder_with_past_model.onnx``: one step on top of the key/values (``past_key_values.{i}.*``) →
  ``logits`` and the grown self-attention key/values; cross-attention is never recomputed, and for
  GPT-2 its key/values come once per image, shared by the image's beams (``cross_shared_by_beams``);
* ``tokenizer.json``: the decoder's tokenizer, run by the ``tokenizers`` package;
* ``sparkvision.json``: preprocessing from ``preprocessor_config.json`` (the same mapping and check as
  image classifiers) and, in ``extra["generation"]``, the defaults of ``generation_config.json``.

Two graphs for the decoder instead of one with an empty past: the first step is the only one that
computes cross-attention key/values, and a single graph would either recompute them at every step
(for ViT-B/16 + GPT-2 about ten times the work of the step itself) or need a conditional branch.
Every graph is checked against the torch model at import, on two batch sizes and two past lengths.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelImportError
from ..models.spec import MODEL_FILE, ModelSpec
from ..preprocess import PreprocessSpec
from .common import (
    EXPORT_TOLERANCE,
    ONNX_OPSET,
    export_onnx,
    random_batch,
    require,
    save_tokenizer_json,
    sha256_files,
    verify_onnx,
)

__all__ = [
    "DECODER_FILE",
    "DECODER_WITH_PAST_FILE",
    "GENERATION_KEYS",
    "TOKENIZER_FILE",
    "import_vision_encoder_decoder",
    "is_vision_encoder_decoder",
]

log = logging.getLogger(__name__)

DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: The ``generate()`` settings kept from ``generation_config.json`` (the run-time defaults).
GENERATION_KEYS = (
    "max_length",
    "max_new_tokens",
    "min_length",
    "do_sample",
    "num_beams",
    "num_return_sequences",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "length_penalty",
    "early_stopping",
)
#: Decoders whose export is exercised by the parity tests (others are tried, and checked at import).
TESTED_DECODERS = ("gpt2",)
_CHECK_TEXTS = ("a cat on a sofa", "Two dogs, running!", "an astronaut's helmet")


def is_vision_encoder_decoder(config: Any) -> bool:
    """Whether a parsed ``config.json`` describes a ``VisionEncoderDecoderModel``."""
    return isinstance(config, dict) and config.get("model_type") == "vision-encoder-decoder"


def import_vision_encoder_decoder(
    checkpoint: Path,
    directory: Path,
    *,
    name: str,
    preprocess: PreprocessSpec | None = None,
    source: str | None = None,
    license: str | None = None,
) -> ModelSpec:
    """Convert a ``VisionEncoderDecoderModel`` checkpoint into a captioning model in ``directory``."""
    from .huggingface import _license_of, _load_model, _preprocess_for, _read_config, checkpoint_weight_files

    checkpoint = Path(checkpoint)
    config = _read_config(checkpoint)
    if not is_vision_encoder_decoder(config):
        raise ModelImportError(f"{checkpoint}: not a vision-encoder-decoder checkpoint")
    encoder_type = str((config.get("encoder") or {}).get("model_type", "?"))
    decoder_type = str((config.get("decoder") or {}).get("model_type", "?"))
    weights = checkpoint_weight_files(checkpoint)
    pre = _preprocess_for(checkpoint, preprocess)
    model = _load_model(checkpoint, "VisionEncoderDecoderModel", weights)
    decoder_config = model.config.decoder
    if not getattr(decoder_config, "add_cross_attention", False):
        raise ModelImportError(
            f"{checkpoint}: the {decoder_type} decoder has no cross-attention to the image"
        )
    layers = int(decoder_config.num_hidden_layers)

    tokenizer = _save_tokenizer(checkpoint, directory)
    generation = _generation_defaults(model, tokenizer, checkpoint)

    from .caption_wrappers import CaptionDecoderFirst, CaptionDecoderWithPast, CaptionEncoder

    export_onnx(
        CaptionEncoder(model),
        random_batch(pre.size, 2),
        directory / MODEL_FILE,
        output_names=("encoder_hidden_states",),
        check_batch=random_batch(pre.size, 3, seed=1),
    )
    _fuse_encoder_attention(CaptionEncoder(model), directory / MODEL_FILE, pre.size, model.config.encoder)
    # Beams share their image's cross-attention key/values in the step graph (GPT-2's attention, the
    # decoder the tests cover; its reordered-and-upcast variant keeps its own code path).
    shared = decoder_type in TESTED_DECODERS and not getattr(decoder_config, "reorder_and_upcast_attn", False)
    _export_decoders(
        CaptionDecoderFirst(model, layers),
        CaptionDecoderWithPast(model, layers, int(decoder_config.hidden_size), shared=shared),
        directory,
        layers=layers,
        vocab_size=int(decoder_config.vocab_size),
        encoder_states=_encoder_states(model, pre.size),
        start_token=int(generation["decoder_start_token_id"]),
        shared=shared,
    )
    if decoder_type not in TESTED_DECODERS:
        log.warning("%s decoders are checked at import but not covered by sparkvision's tests", decoder_type)
    return captioning_spec(
        name=name,
        encoder_type=encoder_type,
        decoder_type=decoder_type,
        preprocess=pre,
        source=source or f"local:{checkpoint.resolve()}",
        license=license if license is not None else _license_of(checkpoint),
        weights_sha256=sha256_files(weights),
        tokenizer=tokenizer,
        generation=generation,
        importer="huggingface",
        encoder_output="encoder_hidden_states",
        decoder_with_past_model=DECODER_WITH_PAST_FILE,
        num_layers=layers,
        vocab_size=int(decoder_config.vocab_size),
        cross_shared_by_beams=shared,
    )


def captioning_spec(
    *,
    name: str,
    encoder_type: str,
    decoder_type: str,
    preprocess: Any,
    source: str,
    license: str,
    weights_sha256: str,
    tokenizer: Any,
    generation: dict[str, Any],
    importer: str,
    encoder_output: str,
    **graphs: Any,
) -> ModelSpec:
    """The ``sparkvision.json`` of a captioning model: the encoder as ``model.onnx``, the decoder graphs
    and the tokenizer beside it; ``graphs`` are the importer's own facts about its decoder graphs
    (``decoder_with_past_model``, ``num_layers``, ``vocab_size``, ``cache_layout``, ...)."""
    return ModelSpec(
        name=name,
        family=f"{encoder_type}-{decoder_type}",
        task="captioning",
        preprocess=preprocess,
        labels=(),
        activation="none",
        outputs=(encoder_output,),
        source=source,
        license=license or "",
        weights_sha256=weights_sha256,
        extra={
            "architecture": "VisionEncoderDecoderModel",
            "importer": importer,
            "encoder": encoder_type,
            "decoder": decoder_type,
            "encoder_model": MODEL_FILE,
            "encoder_output": encoder_output,
            "decoder_model": DECODER_FILE,
            "tokenizer": TOKENIZER_FILE,
            **graphs,
            "clean_up_tokenization_spaces": bool(getattr(tokenizer, "clean_up_tokenization_spaces", False)),
            "generation": generation,
        },
    )


def _fuse_encoder_attention(module: Any, path: Path, size: int, encoder_config: Any) -> None:
    """Fuse the encoder's self-attention blocks into ONNX Runtime's ``Attention`` operator (see
    :mod:`.caption_fusion`) and check the fused graph against torch again. Measured on ViT-B/16, batch
    8, one thread: 3 % less encoder time, encoder states bit-identical to the unfused graph's."""
    heads = int(getattr(encoder_config, "num_attention_heads", 0) or 0)
    if heads < 1:
        return
    import shutil

    from .caption_fusion import fuse_attention

    unfused = path.with_name(path.name + ".unfused")
    shutil.copyfile(path, unfused)
    try:
        fused = fuse_attention(path, heads)
        if fused:
            verify_onnx(
                module,
                path,
                [random_batch(size, 2), random_batch(size, 3, seed=1)],
                output_names=("encoder_hidden_states",),
            )
            log.debug("fused %d attention blocks of the encoder", fused)
    except ModelImportError as exc:  # keep the exported graph, which passed the same check
        log.warning("the encoder's fused attention does not match torch (%s); kept unfused", exc)
        shutil.copyfile(unfused, path)
    finally:
        unfused.unlink()


# -- tokenizer and generation defaults -----------------------------------------------------------------
def _save_tokenizer(checkpoint: Path, directory: Path) -> Any:
    """Save the checkpoint's tokenizer as ``tokenizer.json``; check that it decodes as transformers does."""
    tokenizer = save_tokenizer_json(
        checkpoint,
        directory / TOKENIZER_FILE,
        "a captioning checkpoint",
        "its decoder's tokenizer (tokenizer.json, or vocab.json + merges.txt)",
    )

    from tokenizers import Tokenizer

    from ..generation import decode_tokens

    ours = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
    cleanup = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    specials = [
        i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None
    ]
    for text in _CHECK_TEXTS:
        ids = specials[:1] + list(tokenizer(text, add_special_tokens=False)["input_ids"]) + specials[-1:]
        want = tokenizer.decode(ids, skip_special_tokens=True)
        have = decode_tokens(ours, [ids], clean_up_spaces=cleanup)[0]
        if want != have:
            raise ModelImportError(
                f"{checkpoint}: the saved tokenizer decodes {ids} as {have!r}, transformers as {want!r}; this "
                f"tokenizer is not supported"
            )
    return tokenizer


def _generation_defaults(model: Any, tokenizer: Any, checkpoint: Path) -> dict[str, Any]:
    """``generation_config.json`` (or the model config's) as plain JSON values, with the special ids."""
    config = model.generation_config
    start = config.decoder_start_token_id
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        start = config.bos_token_id if config.bos_token_id is not None else tokenizer.bos_token_id
    if start is None:
        raise ModelImportError(
            f"{checkpoint}: no decoder_start_token_id (nor bos_token_id) in generation_config.json or config.json"
        )
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    pad = config.pad_token_id
    if pad is None:
        pad = eos_ids[0] if eos_ids else None  # what generate() pads with when it has no pad token
    defaults: dict[str, Any] = {
        "decoder_start_token_id": int(start),
        "bos_token_id": None if config.bos_token_id is None else int(config.bos_token_id),
        "eos_token_id": eos_ids,
        "pad_token_id": None if pad is None else int(pad),
    }
    for key in GENERATION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, (bool, int, float, str)) or value is None:
            defaults[key] = value
    return defaults


# -- the decoder graphs ----------------------------------------------------------------------------------
def _encoder_states(model: Any, size: int) -> Any:
    torch = require("torch", "exporting to ONNX")
    from .caption_wrappers import CaptionEncoder

    with torch.no_grad():
        return CaptionEncoder(model).eval()(random_batch(size, 3, seed=2))


def _export_decoders(
    first: Any,
    step: Any,
    directory: Path,
    *,
    layers: int,
    vocab_size: int,
    encoder_states: Any,
    start_token: int,
    shared: bool,
) -> None:
    torch = require("torch", "exporting to ONNX")
    from .caption_wrappers import past_names, present_names

    presents = present_names(layers)
    own = [name for name in presents if ".decoder." in name]
    generator = torch.Generator().manual_seed(3)

    def ids(batch: int, length: int) -> Any:
        tokens = torch.randint(0, vocab_size, (batch, length), generator=generator)
        tokens[:, 0] = start_token
        return tokens

    states2 = encoder_states[:2]
    first_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "encoder_hidden_states": {0: "batch", 1: "patches"},
    }
    first_axes["logits"] = {0: "batch", 1: "sequence"}
    for name in presents:
        first_axes[name] = {0: "batch", 2: "sequence" if ".decoder." in name else "patches"}
    _export(
        first, (ids(2, 3), states2), directory / DECODER_FILE,
        ["input_ids", "encoder_hidden_states"], ["logits", *presents], first_axes,
    )  # fmt: skip

    def past(rows: int, images: int, length: int) -> list[Any]:
        """Key/values after ``length`` positions for ``rows`` rows, the rows of an image consecutive;
        cross-attention entries once per image when the step graph shares them."""
        with torch.no_grad():
            cache = first.eval()(ids(images, length), encoder_states[:images])[1:]
        beams = rows // images
        return [
            entry if shared and i % 4 >= 2 else entry.repeat_interleave(beams, dim=0)
            for i, entry in enumerate(cache)
        ]

    step_axes = {"input_ids": {0: "batch", 1: "step"}, "logits": {0: "batch", 1: "step"}}
    for name in past_names(layers):
        images = "images" if shared and ".encoder." in name else "batch"
        step_axes[name] = {0: images, 2: "past" if ".decoder." in name else "patches"}
    for name in own:
        step_axes[name] = {0: "batch", 2: "total"}
    _export(
        step, (ids(4, 1), *past(4, 2, 3)), directory / DECODER_WITH_PAST_FILE,
        ["input_ids", *past_names(layers)], ["logits", *own], step_axes,
    )  # fmt: skip

    # Check both graphs against torch on other batch sizes and lengths than the export's.
    with torch.no_grad():
        for length in (1, 5):
            _verify(
                first,
                directory / DECODER_FILE,
                {"input_ids": ids(3, length), "encoder_hidden_states": encoder_states},
            )
        for rows, past_length in ((3, 1), (6, 4)):  # one and two beams per image
            feeds = {"input_ids": ids(rows, 1), **dict(zip(past_names(layers), past(rows, 3, past_length)))}
            _verify(step, directory / DECODER_WITH_PAST_FILE, feeds)


def _export(
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    torch = require("torch", "exporting to ONNX")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module.eval(),
                example,
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelImportError(
                f"the decoder cannot be exported to ONNX ({type(exc).__name__}: {line})"
            ) from exc
    from .common import _consolidate

    _consolidate(path)
    _drop_copies(path)


def _drop_copies(path: Path) -> None:
    """Turn one-input ``Concat`` nodes into ``Identity`` (which ONNX Runtime removes).

    Filling transformers' key/value cache concatenates each cached tensor onto an empty one; the trace
    keeps that as a ``Concat`` of a single input, which ONNX Runtime runs as a full copy. In the step
    graph those are copies of every layer's cross-attention key/values, at every step: measured on
    ViT-B/16 + GPT-2 with 24 decoder rows, a third of the step's time. The values are unchanged.
    """
    onnx = require("onnx", "importing a model")
    model = onnx.load(str(path), load_external_data=False)  # weights kept beside it stay where they are
    copies = [n for n in model.graph.node if n.op_type == "Concat" and sum(1 for i in n.input if i) == 1]
    if not copies:
        return
    for node in copies:
        node.op_type = "Identity"
        node.input[:] = [i for i in node.input if i]
        del node.attribute[:]
    onnx.save(model, str(path))


def _verify(module: Any, path: Path, feeds: dict[str, Any]) -> None:
    """ONNX Runtime and torch must agree on every output of ``path`` for these inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = module(*feeds.values())
    try:
        got = session.run(names, {k: v.numpy() for k, v in feeds.items()})
    except Exception as exc:
        raise ModelImportError(f"the exported {path.name} fails on new shapes: {exc}") from exc
    for name, want, have in zip(names, expected, got):
        want = want.detach().float().numpy()
        if want.shape != have.shape:
            raise ModelImportError(f"{path.name}: {name!r} has shape {have.shape}, torch gives {want.shape}")
        scale = max(1.0, float(np.abs(want).max()))
        delta = float(np.abs(want - have).max())
        if not delta <= EXPORT_TOLERANCE * scale:
            raise ModelImportError(
                f"{path.name} disagrees with the torch decoder on {name!r} (max |Δ| {delta:.3g}); this decoder "
                f"does not export correctly"
            )
