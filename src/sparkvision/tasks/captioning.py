"""Image captioning: an image-to-text encoder-decoder (e.g. ViT + GPT-2) run with ONNX Runtime, no torch.

:class:`Captioner` is what every front uses::

    from sparkvision.tasks.captioning import Captioner

    captioner = Captioner.pretrained("./vit-gpt2-captioning")      # a model directory or cached name
    for c in captioner.caption("photos/", num_beams=3):
        print(c.path, c.caption, c.error)

A captioning model is imported from a Hugging Face ``VisionEncoderDecoderModel`` checkpoint
(``sparkvision import DIR``); its generation defaults (``generation_config.json``) apply unless a call
overrides them. Generation follows transformers' ``generate()`` (see :mod:`sparkvision.generation`).

Inputs stream as in classification: every input yields exactly one :class:`Caption`, in input order;
an image that cannot be read gets ``error`` set and no captions, and never stops the batch. Images are
decoded and preprocessed in a background thread while the previous batch generates.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classify import Classifier, iter_sources
from ..errors import ConfigError, ModelFormatError, SparkvisionError
from ..generation import GenerationConfig, Seq2SeqRunner, decode_tokens, generate
from ..images import DEFAULT_MAX_PIXELS
from ..models.catalogue import resolve_model
from ..models.spec import ModelSpec

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CAPTIONING_MODEL", "Caption", "Captioner"]

#: Images per generation batch (times ``num_beams`` decoder rows): big enough to fill the decoder's
#: matrix products, small enough that the cross-attention cache of ViT-B/16 + GPT-2 stays in the
#: hundreds of megabytes.
DEFAULT_BATCH_SIZE = 8
#: Spark NLP's default captioning model name (``nlpconnect/vit-gpt2-image-captioning``).
DEFAULT_CAPTIONING_MODEL = "image_captioning_vit_gpt2"


@dataclass(frozen=True)
class Caption:
    """The result for one input image.

    ``captions`` are the generated texts, best first (``num_return_sequences`` of them; empty when
    ``error`` is set). ``tokens`` are their token ids (start token excluded). ``path`` is the file path
    for file inputs, else ``None``; ``index`` is the input's position; ``width``/``height`` the image's
    true size when it could be read.
    """

    path: str | None
    captions: tuple[str, ...] = ()
    error: str | None = None
    index: int = 0
    width: int | None = None
    height: int | None = None
    tokens: tuple[tuple[int, ...], ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def caption(self) -> str | None:
        """The best caption, or ``None`` for an error row."""
        return self.captions[0] if self.captions else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record the CLI, the web service and the docs use."""
        return {"path": self.path, "captions": list(self.captions), "error": self.error}


@dataclass
class _Loaded:
    index: int
    path: str | None
    pixels: np.ndarray | None
    width: int | None = None
    height: int | None = None
    error: str | None = None


class Captioner:
    """Captions images with one captioning model. Cheap to create; ONNX sessions load on first use.

    Args:
        model_dir: a captioning model directory (``task: "captioning"`` in its ``sparkvision.json``).
        spec: the model's spec (read from ``model_dir`` when omitted).
        threads: ONNX Runtime intra-op threads (default: physical cores).
        max_pixels: images with more pixels are refused (decompression-bomb guard).
    """

    def __init__(
        self,
        model_dir: str | Path,
        spec: ModelSpec | None = None,
        *,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._spec = spec
        self.threads = threads
        self.max_pixels = max_pixels
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def pretrained(cls, name_or_dir: str | Path = DEFAULT_CAPTIONING_MODEL, **options: Any) -> Captioner:
        """A captioner for a model directory, a cached model name or a catalogue name."""
        model_dir, spec = resolve_model(name_or_dir)
        return cls(model_dir, spec, **options)

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            from ..models.store import load_model_dir

            self._spec = load_model_dir(self.model_dir)
        if self._spec.task != "captioning":
            raise ConfigError(
                f"model {self._spec.name!r} is a {self._spec.task} model, not a captioning model; import a "
                f"Hugging Face VisionEncoderDecoderModel checkpoint (sparkvision import DIR)"
            )
        return self._spec

    @property
    def generation_defaults(self) -> dict[str, Any]:
        """The model's own generation settings (from its ``generation_config.json``)."""
        return dict(self.spec.extra.get("generation") or {})

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        """The model's defaults with ``overrides`` applied (``None`` keeps a default); validated."""
        return GenerationConfig.from_defaults(self.generation_defaults, **overrides)

    @property
    def runner(self) -> Seq2SeqRunner:
        return Seq2SeqRunner(self.model_dir, self.spec.extra, self.threads)

    @property
    def tokenizer(self) -> Any:
        """The model's ``tokenizer.json`` (``tokenizers.Tokenizer``), loaded once."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from tokenizers import Tokenizer

                    path = self.model_dir / str(self.spec.extra.get("tokenizer", "tokenizer.json"))
                    try:
                        self._tokenizer = Tokenizer.from_file(str(path))
                    except Exception as exc:
                        raise ModelFormatError(f"{path} is missing or not a tokenizer file: {exc}") from exc
        return self._tokenizer

    def __repr__(self) -> str:
        return f"Captioner({self.spec.name!r}, model_dir={str(self.model_dir)!r})"

    # -- public API -------------------------------------------------------------------------------
    def caption(
        self,
        inputs: Any,
        *,
        batch_size: int | None = None,
        recursive: bool = False,
        progress: Any = None,
        use_cache: bool = True,
        **generation: Any,
    ) -> Iterator[Caption]:
        """Caption images lazily, yielding one :class:`Caption` per input in input order.

        ``inputs``: a file or folder path, bytes, a Pillow image, a numpy array (H×W×3 RGB), or an
        iterable of those (folders are expanded; ``recursive`` descends into subfolders).
        ``generation``: transformers ``generate()`` options overriding the model's defaults —
        ``max_length``, ``max_new_tokens``, ``min_length``, ``num_beams``, ``do_sample``, ``top_k``,
        ``top_p``, ``temperature``, ``repetition_penalty``, ``no_repeat_ngram_size``, ``length_penalty``,
        ``early_stopping``, ``num_return_sequences``, ``seed`` (sampling: the same seed gives the same
        captions, whatever the batch size).
        ``progress``: an object with ``update(n)`` (e.g. a tqdm bar), called after each batch.
        ``use_cache=False`` recomputes the decoder over the whole sequence at each step (a check only).
        """
        config = self.generation_config(**generation)
        size = batch_size or DEFAULT_BATCH_SIZE
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}")
        sources = enumerate(iter_sources(inputs, recursive=recursive))
        preparer = Classifier(self.model_dir, self.spec, max_pixels=self.max_pixels)
        runner = self.runner

        def load(index: int, source: Any, path: str | None) -> _Loaded:
            if source is None:
                return _Loaded(index, path, None, error="no image data (null input)")
            try:
                prepared = preparer.prepare(source)
            except SparkvisionError as exc:  # prepare() turns a decoder bug into ImageDecodeError too
                return _Loaded(index, path, None, error=str(exc))
            return _Loaded(index, path, prepared.pixels, prepared.width, prepared.height)

        with ThreadPoolExecutor(1, thread_name_prefix="sparkvision-caption-decode") as pool:

            def submit(chunk: list[tuple[int, tuple[Any, str | None]]]) -> list[Future[_Loaded]]:
                return [pool.submit(load, index, source, path) for index, (source, path) in chunk]

            pending = submit(list(itertools.islice(sources, size)))
            while pending:
                following = submit(list(itertools.islice(sources, size)))  # decoded while this batch runs
                batch = [future.result() for future in pending]
                results = self._caption_batch(runner, batch, config, use_cache)
                yield from results
                if progress is not None:
                    progress.update(len(results))
                pending = following

    def caption_one(self, source: Any, **generation: Any) -> Caption:
        """Caption a single image (a path, bytes, a Pillow image or an array)."""
        return next(iter(self.caption([source], **generation)))

    # -- internals --------------------------------------------------------------------------------
    def _caption_batch(
        self, runner: Seq2SeqRunner, batch: list[_Loaded], config: GenerationConfig, use_cache: bool
    ) -> list[Caption]:
        good = [item for item in batch if item.pixels is not None]
        generated: dict[int, list[Any]] = {}
        if good:
            pixels = np.stack([item.pixels for item in good])  # type: ignore[misc]
            sequences = generate(
                runner, pixels, config, use_cache=use_cache, seeds=[item.index for item in good]
            )
            for item, group in zip(good, sequences):
                generated[item.index] = group
        cleanup = bool(self.spec.extra.get("clean_up_tokenization_spaces", False))
        results = []
        for item in batch:
            group = generated.get(item.index)
            if group is None:
                results.append(Caption(path=item.path, error=item.error, index=item.index))
                continue
            tokens = tuple(sequence.tokens for sequence in group)
            texts = decode_tokens(self.tokenizer, tokens, clean_up_spaces=cleanup)
            results.append(
                Caption(
                    path=item.path,
                    captions=tuple(texts),
                    index=item.index,
                    width=item.width,
                    height=item.height,
                    tokens=tokens,
                )
            )
        return results
