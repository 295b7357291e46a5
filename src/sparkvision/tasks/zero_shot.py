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

Use it through the classifier (``Classifier.classify(images, candidate_labels=["cat", "dog"])``), the
CLI (``sparkvision classify photos/ --model clip_vit_base_patch32 --labels "a cat,a dog"``) or
directly with :func:`text_embeddings` and :func:`zero_shot_logits` (the Spark stage does).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine import get_engine
from .errors import ConfigError, ModelFormatError
from .models.spec import ModelSpec

if TYPE_CHECKING:
    from .classify import Classifier, Prediction

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "TEXT_MODEL_FILE",
    "TOKENIZER_FILE",
    "classify_zero_shot",
    "clear_text_cache",
    "embed_images",
    "parse_labels",
    "prompts_for",
    "text_embeddings",
    "tokenize",
    "zero_shot_logits",
    "zero_shot_view",
]

DEFAULT_PROMPT_TEMPLATE = "a photo of a {}"
TEXT_MODEL_FILE = "text_model.onnx"
TOKENIZER_FILE = "tokenizer.json"
_CACHE_SIZE = 32


def parse_labels(text: str | Sequence[str]) -> list[str]:
    """Candidate labels from ``"a cat, a dog"`` (comma-separated) or a sequence; checked and stripped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    labels = [str(item).strip() for item in items]
    labels = [label for label in labels if label]
    if not labels:
        raise ConfigError("give at least one candidate label (e.g. --labels 'a cat,a dog')")
    seen: set[str] = set()
    duplicates = sorted({label for label in labels if label in seen or seen.add(label)})
    if duplicates:
        raise ConfigError(f"candidate labels must be distinct; repeated: {', '.join(duplicates)}")
    return labels


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
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - tokenizers is a dependency of zero-shot use
        raise ConfigError("zero-shot models need the 'tokenizers' package: pip install tokenizers") from exc
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


# -- the classifier view ----------------------------------------------------------------------------------
class _ZeroShotEngine:
    """Looks like an :class:`~sparkvision.engine.Engine` whose ``logits`` are zero-shot logits."""

    def __init__(self, image_engine: Any, text: np.ndarray, logit_scale: float) -> None:
        self.image_engine = image_engine
        self.text = text
        self.logit_scale = logit_scale

    def __getattr__(self, name: str) -> Any:  # session, input_name, ...: those of the image model
        return getattr(self.image_engine, name)

    def run(self, inputs: Any, outputs: Sequence[str] = ("logits",)) -> list[np.ndarray]:
        unknown = set(outputs) - {"logits", "embeddings"}
        if unknown:
            raise ConfigError(f"a zero-shot model has no output {', '.join(sorted(unknown))}")
        embeddings = self.image_engine.run(inputs, ["embeddings"])[0]
        results = {"embeddings": embeddings}
        if "logits" in outputs:
            results["logits"] = zero_shot_logits(embeddings, self.text, self.logit_scale)
        return [results[name] for name in outputs]


def zero_shot_view(
    classifier: Classifier, candidate_labels: Iterable[str] | str | None, *, template: str | None = None
) -> Classifier:
    """A classifier over the same image model whose labels are ``candidate_labels``.

    It reuses the classifier's ONNX session; its ``logits`` are CLIP's zero-shot logits and its
    activation is softmax over the candidates, so the ordinary classification loop applies unchanged.
    """
    spec = classifier.spec
    extra = _settings(spec)
    if candidate_labels is None:
        raise ConfigError(
            f"{spec.name!r} is a zero-shot model: give the candidate labels "
            f"(candidate_labels=[...] in Python, --labels 'a cat,a dog' on the command line)"
        )
    labels = parse_labels(candidate_labels if isinstance(candidate_labels, str) else list(candidate_labels))
    text = text_embeddings(classifier.model_dir, spec, labels, template=template, threads=classifier.threads)
    return _view(classifier, labels, text, float(extra["logit_scale"]))


def _view(classifier: Classifier, labels: Sequence[str], text: np.ndarray, scale: float) -> Classifier:
    from .classify import Classifier

    view_spec = classifier.spec.with_changes(
        task="classification",
        labels=tuple(labels),
        synsets=None,
        activation="softmax",
        outputs=("logits", "embeddings"),
    )

    class ZeroShotView(Classifier):
        def _engine(self, threads: int | None) -> Any:  # the image model's engine, zero-shot logits
            return _ZeroShotEngine(classifier._engine(threads), text, scale)

    return ZeroShotView(
        classifier.model_dir,
        view_spec,
        threads=classifier.threads,
        decode_workers=classifier.decode_workers,
        max_pixels=classifier.max_pixels,
    )


def classify_zero_shot(
    classifier: Classifier,
    inputs: Any,
    candidate_labels: Iterable[str] | str | None,
    *,
    top_k: int = 5,
    template: str | None = None,
    **options: Any,
) -> Iterator[Prediction]:
    """``Classifier.classify`` for a zero-shot model (``top_k`` is capped at the number of labels)."""
    view = zero_shot_view(classifier, candidate_labels, template=template)
    k = (
        top_k
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1
        else min(top_k, view.spec.num_classes)
    )
    yield from view.classify(inputs, top_k=k, **options)


def embed_images(
    classifier: Classifier, inputs: Any, *, batch_size: int | None = None, recursive: bool = False
) -> Iterator[Prediction]:
    """Image embeddings from a zero-shot model, with no labels (``Prediction.embedding`` only)."""
    spec = classifier.spec
    extra = _settings(spec)
    width = _embedding_width(classifier)
    view = _view(classifier, ("",), np.zeros((1, width), dtype=np.float32), float(extra["logit_scale"]))
    for prediction in view.classify(
        inputs, top_k=1, batch_size=batch_size, recursive=recursive, embeddings=True
    ):
        yield dataclasses.replace(prediction, labels=(), scores=(), class_ids=())


def _embedding_width(classifier: Classifier) -> int:
    for output in classifier.engine.session.get_outputs():
        if output.name == "embeddings" and isinstance(output.shape[-1], int):
            return int(output.shape[-1])
    raise ModelFormatError(f"{classifier.model_dir}/model.onnx has no fixed-width 'embeddings' output")
