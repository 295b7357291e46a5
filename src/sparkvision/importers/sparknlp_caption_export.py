"""Import the folder Spark NLP's captioning notebook writes for ``VisionEncoderDecoderForImageCaptioning``.

``HuggingFace_ONNX_in_Spark_NLP_VisionEncoderDecoderForImageCaptioning`` exports a Hugging Face
``VisionEncoderDecoderModel`` (e.g. ``nlpconnect/vit-gpt2-image-captioning``) with ``optimum-cli export
onnx`` and moves the JSON and text files into ``assets/``::

    EXPORT/encoder_model.onnx               pixel_values → last_hidden_state
    EXPORT/decoder_model.onnx               input_ids, encoder_hidden_states → logits, present.{i}.key/value
    EXPORT/decoder_with_past_model.onnx     + past_key_values.{i}.key/value → logits, present.{i}.key/value
    EXPORT/decoder_model_merged.onnx        (both decoders behind a use_cache_branch switch; not needed)
    EXPORT/assets/config.json, generation_config.json, preprocessor_config.json,
                  tokenizer.json, vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json

Spark NLP's ``loadSavedModel`` reads ``encoder_model.onnx`` and ``decoder_model.onnx`` (it runs the
decoder over the whole sequence at each step) and the assets. sparkvision loads the same folder
unchanged: the graphs are copied as they are, with optimum's key/value convention recorded in
``sparkvision.json`` (``cache_layout: "self"``: self-attention key/values only; the step graph takes
the encoder states again and recomputes cross-attention) so that :mod:`sparkvision.generation` runs
them with its one code path. ``decoder_with_past_model.onnx``, when present, gives the key/value
cache; without it every step recomputes the whole sequence, as Spark NLP does. Needs transformers
to read the tokenizer, generation defaults and preprocessing (the ``import`` extra); no torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from ..errors import ModelImportError
from ..models.spec import MODEL_FILE, ModelSpec
from .common import require, sha256_files

__all__ = ["graph_files", "import_sparknlp_caption_export", "is_sparknlp_caption_export"]

ASSETS = "assets"
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_WITH_PAST_FILE = "decoder_with_past_model.onnx"


def is_sparknlp_caption_export(path: Path) -> bool:
    """Whether ``path`` is laid out as Spark NLP's captioning export: encoder and decoder graphs plus
    ``assets/``."""
    path = Path(path)
    return all((path / f).is_file() for f in (ENCODER_FILE, DECODER_FILE)) and (path / ASSETS).is_dir()


def graph_files(folder: Path) -> list[Path]:
    """The graphs sparkvision uses from an export folder (the merged decoder is not one of them)."""
    names = [ENCODER_FILE, DECODER_FILE, DECODER_WITH_PAST_FILE]
    return [Path(folder) / n for n in names if (Path(folder) / n).is_file()]


def import_sparknlp_caption_export(
    folder: Path, directory: Path, *, name: str, license: str | None = None
) -> ModelSpec:
    """Convert a Spark NLP captioning export folder into a sparkvision captioning model in ``directory``."""
    from .huggingface import _preprocess_for, _read_config
    from .vision_encoder_decoder import _generation_defaults, _save_tokenizer, captioning_spec

    transformers = require("transformers", "reading a Spark NLP export's assets")
    folder = Path(folder)
    assets = folder / ASSETS
    config = _read_config(assets)
    if config.get("model_type") != "vision-encoder-decoder":
        raise ModelImportError(
            f"{assets}/config.json describes a {config.get('model_type')!r} model, not a vision-encoder-decoder"
        )
    decoder_config = config.get("decoder") or {}
    layers = decoder_config.get("n_layer", decoder_config.get("num_hidden_layers"))
    vocab_size = decoder_config.get("vocab_size")
    if not isinstance(layers, int) or not isinstance(vocab_size, int):
        raise ModelImportError(f"{assets}/config.json gives no decoder layer count or vocabulary size")

    pre = _preprocess_for(assets, None)
    tokenizer = _save_tokenizer(assets, directory)
    if (assets / "generation_config.json").is_file():
        generation_config = transformers.GenerationConfig.from_pretrained(str(assets))
    else:
        generation_config = transformers.GenerationConfig.from_model_config(
            transformers.AutoConfig.from_pretrained(str(assets))
        )
    stand_in = SimpleNamespace(
        generation_config=generation_config,
        config=SimpleNamespace(decoder_start_token_id=config.get("decoder_start_token_id")),
    )
    generation = _generation_defaults(stand_in, tokenizer, folder)

    encoder_output = _check_graphs(folder, layers)
    graphs = [g.name for g in graph_files(folder)]
    has_past = DECODER_WITH_PAST_FILE in graphs
    for graph in graphs:  # each graph with any external-data file optimum wrote beside it
        for file in folder.iterdir():
            if file.is_file() and file.name.startswith(graph):
                shutil.copyfile(file, directory / (MODEL_FILE if file.name == ENCODER_FILE else file.name))
    return captioning_spec(
        name=name,
        encoder_type=str((config.get("encoder") or {}).get("model_type", "?")),
        decoder_type=str(decoder_config.get("model_type", "?")),
        preprocess=pre,
        source=f"sparknlp-export:{folder.resolve()}",
        license=license or "",
        weights_sha256=sha256_files(folder / g for g in graphs),
        tokenizer=tokenizer,
        generation=generation,
        importer="sparknlp-export",
        encoder_output=encoder_output,
        decoder_with_past_model=DECODER_WITH_PAST_FILE if has_past else None,
        cache_layout="self",
        num_layers=layers,
        vocab_size=vocab_size,
    )


def _check_graphs(folder: Path, layers: int) -> str:
    """The graphs must have optimum's input and output names; returns the encoder's output name."""
    onnx = require("onnx", "importing a model")

    def names(file: str) -> tuple[list[str], list[str]]:
        path = folder / file
        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as exc:
            raise ModelImportError(f"{path} is not a readable ONNX file: {exc}") from exc
        initializers = {t.name for t in graph.initializer}
        return [i.name for i in graph.input if i.name not in initializers], [o.name for o in graph.output]

    def require_names(file: str, have: list[str], want: list[str], what: str) -> None:
        missing = [n for n in want if n not in have]
        if missing:
            raise ModelImportError(
                f"{folder / file} lacks the {what} {', '.join(missing[:4])}: not an optimum export of a "
                f"{layers}-layer VisionEncoderDecoderModel"
            )

    inputs, outputs = names(ENCODER_FILE)
    if inputs != ["pixel_values"] or not outputs:
        raise ModelImportError(f"{folder / ENCODER_FILE} must take pixel_values alone, it takes {inputs}")
    encoder_output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]
    presents = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    pasts = [n.replace("present.", "past_key_values.", 1) for n in presents]
    decoders = {DECODER_FILE: ["input_ids", "encoder_hidden_states"]}
    if (folder / DECODER_WITH_PAST_FILE).is_file():
        decoders[DECODER_WITH_PAST_FILE] = ["input_ids", "encoder_hidden_states", *pasts]
    for file, expected in decoders.items():
        inputs, outputs = names(file)
        require_names(file, inputs, expected, "inputs")
        extra = sorted(set(inputs) - set(expected))
        if extra:
            raise ModelImportError(
                f"{folder / file} takes inputs sparkvision does not feed: {', '.join(extra)}"
            )
        require_names(file, outputs, ["logits", *presents], "outputs")
    return encoder_output
