"""Image captioning: an image-to-text encoder-decoder (e.g. ViT + GPT-2) run with ONNX Runtime, no torch.

:class:`Captioner` is what every front uses::

    from sparkvision.tasks.captioning import Captioner

    captioner = Captioner.pretrained("./vit-gpt2-captioning")      # a model directory or cached name
    for c in captioner.caption("photos/", num_beams=3):
        print(c.path, c.caption, c.error)

A captioning model is imported from a Hugging Face ``VisionEncoderDecoderModel`` checkpoint
(``sparkvision import DIR``); its generation defaults (``generation_config.json``) apply unless a call
overrides them. Generation follows transformers' ``generate()`` (see :mod:`sparkvision.generation`).

Inputs stream through the same machinery as classification (:class:`~sparkvision.tasks.base.ImageTask`):
every input yields exactly one :class:`Caption`, in input order; an image that cannot be read gets
``error`` set and no captions, and never stops the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelFormatError
from ..extras import require
from ..generation import GeneratedSequence, GenerationConfig, Seq2SeqRunner, decode_tokens, generate
from ..models.spec import ModelSpec
from ..scheduling import Chunk, stack_pixels
from ..sources import InMemorySources
from .base import ImageTask
from .registry import register_task

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CAPTIONING_MODEL", "Caption", "Captioner"]

#: Images per generation batch (times ``num_beams`` decoder rows): big enough to fill the decoder's
#: matrix products, small enough that the cross-attention cache of ViT-B/16 + GPT-2 (about 15 MB per
#: decoder row) stays in the hundreds of megabytes.
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


@register_task("captioning")
class Captioner(ImageTask):
    """Captions images with one captioning model. Cheap to create; ONNX sessions load on first use.

    Takes :class:`~sparkvision.tasks.base.ImageTask`'s arguments (``model_dir``, ``spec``,
    ``threads``, ``decode_workers``, ``max_pixels``). A stream of many images runs one batch per core
    ("lanes", each on one-thread ONNX Runtime sessions); one batch's worth of in-memory images runs on
    ``threads`` intra-op threads.
    """

    def __init__(self, model_dir: str | Path, spec: ModelSpec | None = None, **options: Any) -> None:
        super().__init__(model_dir, spec, **options)
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def pretrained(cls, name: str | Path = DEFAULT_CAPTIONING_MODEL, **options: Any) -> Captioner:  # type: ignore[override]
        """A captioner for a model directory, a cached model name or a catalogue name."""
        return super().pretrained(name, **options)

    @property
    def spec(self) -> ModelSpec:
        spec = super().spec
        if spec.task != "captioning":
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model, not a captioning model; import a Hugging Face "
                f"VisionEncoderDecoderModel checkpoint (sparkvision import DIR)"
            )
        return spec

    @property
    def generation_defaults(self) -> dict[str, Any]:
        """The model's own generation settings (from its ``generation_config.json``)."""
        return dict(self.spec.extra.get("generation") or {})

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        """The model's defaults with ``overrides`` applied (``None`` keeps a default); validated."""
        return GenerationConfig.from_defaults(self.generation_defaults, **overrides)

    def runner(self, threads: int | None = None) -> Seq2SeqRunner:
        """The model's three graphs on ONNX Runtime sessions with ``threads`` intra-op threads."""
        return Seq2SeqRunner(
            self.model_dir, self.spec.extra, threads if threads is not None else self.threads
        )

    @property
    def tokenizer(self) -> Any:
        """The model's ``tokenizer.json`` (``tokenizers.Tokenizer``), loaded once."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    Tokenizer = require(
                        "tokenizers", extra="captioning", purpose="running captioning models"
                    ).Tokenizer

                    path = self.model_dir / str(self.spec.extra.get("tokenizer", "tokenizer.json"))
                    try:
                        self._tokenizer = Tokenizer.from_file(str(path))
                    except Exception as exc:
                        raise ModelFormatError(f"{path} is missing or not a tokenizer file: {exc}") from exc
        return self._tokenizer

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

        def infer(chunk: Chunk, lane: bool) -> list[Caption]:
            runner = self.runner(1 if lane else None)
            return self._with_repair(lambda: self._caption_chunk(runner, chunk, config, use_cache))

        return self._stream(
            inputs, infer, batch_size=batch_size or DEFAULT_BATCH_SIZE, recursive=recursive, progress=progress
        )

    def caption_sources(self, sources: Any, **options: Any) -> Iterator[Caption]:
        """Caption a stream of in-memory sources (bytes, images, arrays; ``None`` becomes an error row);
        strings are never taken for paths."""
        return self.caption(InMemorySources(sources), **options)

    def caption_one(self, source: Any, **generation: Any) -> Caption:
        """Caption a single image (a path, bytes, a Pillow image or an array)."""
        return next(iter(self.caption([source], **generation)))

    # -- internals --------------------------------------------------------------------------------
    def _caption_chunk(
        self, runner: Seq2SeqRunner, chunk: Chunk, config: GenerationConfig, use_cache: bool
    ) -> list[Caption]:
        good = [(index, loaded) for index, _, loaded in chunk if loaded.pixels is not None]
        generated: dict[int, list[GeneratedSequence]] = {}
        if good:
            pixels = stack_pixels([loaded.pixels for _, loaded in good])  # type: ignore[misc]
            seeds = [index for index, _ in good]  # sampling: one stream per input, whatever the batch
            for (index, _), group in zip(
                good, generate(runner, pixels, config, use_cache=use_cache, seeds=seeds)
            ):
                generated[index] = group
        cleanup = bool(self.spec.extra.get("clean_up_tokenization_spaces", False))
        results = []
        for index, path, loaded in chunk:
            group = generated.get(index)
            if group is None:
                results.append(Caption(path=path, error=loaded.error, index=index))
                continue
            tokens = tuple(sequence.tokens for sequence in group)
            texts = decode_tokens(self.tokenizer, tokens, clean_up_spaces=cleanup)
            results.append(
                Caption(
                    path=path,
                    captions=tuple(texts),
                    index=index,
                    width=loaded.width,
                    height=loaded.height,
                    tokens=tokens,
                )
            )
        return results
