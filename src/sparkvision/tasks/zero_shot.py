"""Zero-shot classification (CLIP): score images against labels chosen at run time.

A zero-shot model directory (``task == "zero-shot"``, made by ``sparkvision import`` from a Hugging
Face ``CLIPModel``) holds two ONNX graphs and a tokenizer:

* ``model.onnx``: ``pixel_values`` → ``embeddings`` (the projected image features);
* ``text_model.onnx``: ``input_ids`` (padded to ``max_text_length``) → ``text_embeddings``;
* ``tokenizer.json``: CLIP's byte-level BPE tokenizer, run with the ``tokenizers`` package (no torch).

Each candidate label becomes a prompt (default template ``"a photo of a {}"``); the prompts' text
embeddings are computed once per (model, template, label set) and cached in memory. An image's scores
are then exactly Hugging Face ``CLIPModel``'s::

    logits = logit_scale * normalise(image_embedding) · normalise(text_embedding)ᵀ
    scores = softmax(logits over the candidate labels)

Use it through :class:`ZeroShotClassifier` (what ``Classifier.pretrained`` and ``sparkvision.load``
return for such a model: ``classify(images, candidate_labels=["cat", "dog"])``), the CLI
(``sparkvision classify photos/ --model clip_vit_base_patch32 --labels "a cat,a dog"``) or directly
with :func:`text_embeddings` and :func:`zero_shot_logits`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import get_engine
from ..errors import ConfigError, ModelFormatError
from ..extras import require
from ..models.spec import ModelSpec
from ..options import parse_candidate_labels
from ..results import Prediction
from ..scheduling import Chunk, stack_pixels
from ..scoring import softmax
from .labelling import Head, LabelTask
from .registry import register_task

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "TEXT_MODEL_FILE",
    "TOKENIZER_FILE",
    "ZeroShotClassifier",
    "clear_text_cache",
    "prompts_for",
    "text_embeddings",
    "tokenize",
    "zero_shot_logits",
]

DEFAULT_PROMPT_TEMPLATE = "a photo of a {}"
TEXT_MODEL_FILE = "text_model.onnx"
TOKENIZER_FILE = "tokenizer.json"
_CACHE_SIZE = 32


def prompts_for(labels: Sequence[str], template: str = DEFAULT_PROMPT_TEMPLATE) -> list[str]:
    """``template`` with ``{}`` replaced by each label (``"a photo of a {}"`` → ``"a photo of a cat"``)."""
    if "{}" not in template:
        raise ConfigError(f"the prompt template must contain '{{}}' where the label goes, got {template!r}")
    return [template.replace("{}", label) for label in labels]


def _settings(spec: ModelSpec) -> dict[str, Any]:
    if spec.task != "zero-shot":
        raise ConfigError(
            f"model {spec.name!r} is not a zero-shot model (its labels are fixed); candidate labels apply "
            f"only to zero-shot models such as clip_vit_base_patch32"
        )
    extra = dict(spec.extra)
    for key in ("logit_scale", "max_text_length", "pad_token_id"):
        if key not in extra:
            raise ModelFormatError(
                f"zero-shot model {spec.name!r} lacks {key!r} in sparkvision.json; re-import it"
            )
    return extra


# -- text side ------------------------------------------------------------------------------------------
_TOKENIZERS: dict[tuple[str, int], Any] = {}
_TOKENIZERS_LOCK = threading.Lock()


def _tokenizer(model_dir: Path, spec: ModelSpec) -> Any:
    """The model's ``tokenizer.json``, loaded once, padding and truncating to ``max_text_length``."""
    Tokenizer = require("tokenizers", extra="zero-shot", purpose="running a zero-shot model").Tokenizer
    extra = _settings(spec)
    path = (model_dir / str(extra.get("tokenizer", TOKENIZER_FILE))).resolve()
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError as exc:
        raise ModelFormatError(f"{path} is missing: re-import the zero-shot model") from exc
    with _TOKENIZERS_LOCK:
        tokenizer = _TOKENIZERS.get(key)
        if tokenizer is None:
            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:
                raise ModelFormatError(f"{path} is not a valid tokenizer file: {exc}") from exc
            length = int(extra["max_text_length"])
            tokenizer.enable_truncation(max_length=length)
            tokenizer.enable_padding(pad_id=int(extra["pad_token_id"]), length=length)
            _TOKENIZERS[key] = tokenizer
        return tokenizer


def tokenize(model_dir: str | Path, spec: ModelSpec, texts: Sequence[str]) -> np.ndarray:
    """Token ids (int64, ``len(texts) × max_text_length``) exactly as the text tower expects them."""
    tokenizer = _tokenizer(Path(model_dir), spec)
    return np.array([encoding.ids for encoding in tokenizer.encode_batch(list(texts))], dtype=np.int64)


_TEXT_CACHE: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_TEXT_LOCK = threading.Lock()


def text_embeddings(
    model_dir: str | Path,
    spec: ModelSpec,
    labels: Sequence[str],
    *,
    template: str | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Unit-length text embeddings (``len(labels) × D``, float32) of the labels' prompts.

    Computed once per model file, template and label list, then served from an in-memory cache.
    """
    model_dir = Path(model_dir)
    extra = _settings(spec)
    template = template or str(extra.get("prompt_template", DEFAULT_PROMPT_TEMPLATE))
    prompts = prompts_for(labels, template)
    text_model = (model_dir / str(extra.get("text_model", TEXT_MODEL_FILE))).resolve()
    try:
        stat = text_model.stat()
    except OSError as exc:
        raise ModelFormatError(f"{text_model} is missing: re-import the zero-shot model") from exc
    key = (str(text_model), stat.st_mtime_ns, stat.st_size, tuple(prompts))
    with _TEXT_LOCK:
        cached = _TEXT_CACHE.get(key)
        if cached is not None:
            _TEXT_CACHE.move_to_end(key)
            return cached
    ids = tokenize(model_dir, spec, prompts)
    engine = get_engine(text_model, threads)
    raw = np.asarray(engine.run({"input_ids": ids}, ["text_embeddings"])[0], dtype=np.float32)
    embeddings = _normalise(raw)
    embeddings.setflags(write=False)
    with _TEXT_LOCK:
        _TEXT_CACHE[key] = embeddings
        while len(_TEXT_CACHE) > _CACHE_SIZE:
            _TEXT_CACHE.popitem(last=False)
    return embeddings


def clear_text_cache() -> None:
    """Forget every cached label set (tests, or to free memory)."""
    with _TEXT_LOCK:
        _TEXT_CACHE.clear()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.sum(np.square(vectors, dtype=np.float32), axis=-1, keepdims=True))
    return (vectors / norms).astype(np.float32)


def zero_shot_logits(image_embeddings: np.ndarray, text: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP's ``logits_per_image``: scaled cosine similarity of each image with each label prompt.

    ``image_embeddings`` are the image tower's raw outputs; ``text`` the unit-length rows from
    :func:`text_embeddings`. Softmax over axis 1 gives the zero-shot probabilities.
    """
    return np.float32(logit_scale) * (_normalise(np.asarray(image_embeddings, dtype=np.float32)) @ text.T)


# -- the task -------------------------------------------------------------------------------------------
@register_task("zero-shot")
class ZeroShotClassifier(LabelTask):
    """Scores images against labels chosen per request (``candidate_labels``), with a CLIP model.

    ``classify``/``classify_batch``/``classify_sources`` behave as :class:`~sparkvision.Classifier`'s
    and need ``candidate_labels``; ``embed`` without labels returns the image embeddings alone.
    ``template`` overrides the model's prompt template (default ``"a photo of a {}"``).
    """

    def _head(self, candidate_labels: Sequence[str] | str | None, template: str | None = None) -> Head:
        spec = self.spec
        extra = _settings(spec)
        if candidate_labels is None:
            raise ConfigError(
                f"{spec.name!r} is a zero-shot model: give the candidate labels "
                f"(candidate_labels=[...] in Python, --labels 'a cat,a dog' on the command line)"
            )
        labels = parse_candidate_labels(candidate_labels)
        text = text_embeddings(self.model_dir, spec, labels, template=template, threads=self.threads)
        scale = float(extra["logit_scale"])

        def score(batch: np.ndarray, lane: bool, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
            images = self._run(batch, ["embeddings"], lane=lane)[0]
            return softmax(zero_shot_logits(images, text, scale)), images if embeddings else None

        return Head(labels, score)

    def embed(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        recursive: bool = False,
        candidate_labels: Sequence[str] | str | None = None,
    ) -> Iterator[Prediction]:
        """Image embeddings; with ``candidate_labels`` the top-1 label alongside, else no labels."""
        if candidate_labels is not None:
            return super().embed(
                inputs, batch_size=batch_size, recursive=recursive, candidate_labels=candidate_labels
            )
        _settings(self.spec)

        def infer(chunk: Chunk, lane: bool) -> list[Prediction]:
            good = [i for i, (_, _, loaded) in enumerate(chunk) if loaded.pixels is not None]
            features = {}
            if good:
                batch = stack_pixels([chunk[i][2].pixels for i in good])
                features = dict(zip(good, self._run(batch, ["embeddings"], lane=lane)[0]))
            return [
                Prediction(path=path, error=loaded.error, index=index)
                if i not in features
                else Prediction(
                    path=path, index=index, width=loaded.width, height=loaded.height, embedding=features[i]
                )
                for i, (index, path, loaded) in enumerate(chunk)
            ]

        return self._stream(inputs, infer, batch_size=batch_size, recursive=recursive)
