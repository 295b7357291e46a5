"""Text generation for encoder-decoder models in NumPy + ONNX Runtime: Hugging Face ``generate()`` semantics.

A captioning model directory (``task == "captioning"``, see
:mod:`sparkvision.importers.vision_encoder_decoder`) holds an image encoder and two decoder graphs: the
first step (which also computes each layer's cross-attention key/values) and a step with past
key/values. :class:`Seq2SeqRunner` runs them; :func:`generate` decodes with them:

* greedy search, and sampling (temperature, top-k, top-p) from a seeded NumPy generator — one stream per
  image, so a caption never depends on which other images shared its batch;
* beam search (``num_beams``, ``length_penalty``, ``early_stopping`` as transformers 5's vectorised beam
  search, including its stopping heuristic), optionally with sampling;
* ``repetition_penalty``, ``no_repeat_ngram_size``, ``min_length``, ``max_length`` / ``max_new_tokens``,
  ``num_return_sequences``.

The encoder runs once per image; the decoder runs batched over every image and beam of a batch with a
key/value cache. Cross-attention key/values are computed once per image and never copied when beams
are reordered (beams of one image share them). Rows whose result is settled (a finished greedy
sequence, an image whose beams can no longer improve) leave the batch: the remaining rows compute the
same numbers as before, so results do not change.

Token ids match transformers' ``generate()`` for greedy and beam search (the parity tests compare
them); sampling is reproducible with a seed but draws other random numbers than torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .engine import get_engine
from .errors import ConfigError, ModelFormatError

__all__ = [
    "GeneratedSequence",
    "GenerationConfig",
    "Seq2SeqRunner",
    "decode_tokens",
    "generate",
]

_NEG = np.float32(-1.0e9)  # transformers' "cannot be chosen" score in beam search


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate: the ``generate()`` arguments of transformers, with its meaning for each.

    ``max_length`` counts the decoder start token (transformers' convention); ``max_new_tokens``, when
    set, wins and counts generated tokens only. ``seed`` seeds sampling (``None``: fresh entropy).
    """

    decoder_start_token_id: int
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None
    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eos_token_id", tuple(int(e) for e in self.eos_token_id))
        if self.pad_token_id is None and self.eos_token_id:
            object.__setattr__(self, "pad_token_id", self.eos_token_id[0])
        positive = {"num_beams": self.num_beams, "num_return_sequences": self.num_return_sequences}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.total_length < 2:
            raise ConfigError(
                f"max_length must leave room for at least one token after the start token, got "
                f"{self.max_length if self.max_new_tokens is None else self.max_new_tokens!r}"
            )
        if self.min_length < 0 or self.no_repeat_ngram_size < 0:
            raise ConfigError("min_length and no_repeat_ngram_size cannot be negative")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be above 0, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"top_k cannot be negative, got {self.top_k!r}")
        if not self.repetition_penalty > 0:
            raise ConfigError(f"repetition_penalty must be above 0, got {self.repetition_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            raise ConfigError(f"early_stopping must be true, false or 'never', got {self.early_stopping!r}")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ConfigError(
                "several returned sequences need beam search (num_beams) or sampling (do_sample)"
            )
        if self.num_return_sequences > self.num_beams and self.num_beams > 1:
            raise ConfigError(
                f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})"
            )
        if self.pad_token_id is None:
            raise ConfigError("the model has neither a padding nor an end token id")

    @property
    def total_length(self) -> int:
        """The longest sequence, start token included."""
        return 1 + self.max_new_tokens if self.max_new_tokens is not None else self.max_length

    @classmethod
    def from_defaults(cls, defaults: Mapping[str, Any], **overrides: Any) -> GenerationConfig:
        """A config from a model's stored defaults (``extra["generation"]``) and call-time overrides;
        ``None`` overrides keep the default. Unknown keys in ``defaults`` are ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown generation option(s): {', '.join(unknown)}")
        values = {k: v for k, v in defaults.items() if k in known and v is not None}
        eos = values.get("eos_token_id", ())
        values["eos_token_id"] = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
        if "decoder_start_token_id" not in values:
            raise ModelFormatError("the captioning model has no decoder_start_token_id; re-import it")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("max_length") is not None and overrides.get("max_new_tokens") is None:
            values["max_new_tokens"] = None  # an explicit max_length wins over a stored max_new_tokens
        return cls(**values)

    def with_changes(self, **changes: Any) -> GenerationConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class GeneratedSequence:
    """One generated sequence: the new token ids (start token excluded; the end token kept when the
    sequence ended with one) and, for beam search, its length-penalised score."""

    tokens: tuple[int, ...]
    score: float | None = None


# -- the network ---------------------------------------------------------------------------------------
class Seq2SeqRunner:
    """The graphs of an encoder-decoder model directory, run with ONNX Runtime.

    The cache is a list of arrays. Entries that :attr:`moves_with_beam` marks are self-attention keys
    and values (one position longer after each step, reordered when beams change parents); the others
    are fixed for an image. Two layouts (``extra["cache_layout"]``):

    * ``"cross"`` (sparkvision's import): four entries per decoder layer, self-attention key and value
      then cross-attention key and value, computed once by the first step;
    * ``"self"`` (optimum's ``decoder_model.onnx`` / ``decoder_with_past_model.onnx``, as in Spark NLP's
      export folders): two self-attention entries per layer (``present.{i}.key`` / ``.value``) and, last,
      the encoder states, which the step graph takes again (it recomputes cross-attention).

    Without a step graph (``decoder_with_past_model`` unset) :attr:`has_cache` is false and every step
    recomputes the decoder over the whole sequence.
    """

    def __init__(self, model_dir: str | Path, extra: Mapping[str, Any], threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        try:
            self.layers = int(extra["num_layers"])
            self.decoder_file = str(extra["decoder_model"])
            step = extra.get("decoder_with_past_model")
            self.step_file = None if step is None else str(step)
            self.encoder_file = str(extra.get("encoder_model", "model.onnx"))
            self.encoder_output = str(extra.get("encoder_output", "encoder_hidden_states"))
            layout = str(extra.get("cache_layout", "cross"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(
                f"{self.model_dir}: captioning settings missing from sparkvision.json ({exc})"
            ) from exc
        layers = range(self.layers)
        if layout == "cross":
            names = [f"{side}.{kv}" for side in ("decoder", "encoder") for kv in ("key", "value")]
            self.present_names = [f"present.{i}.{n}" for i in layers for n in names]
            self.past_names = [f"past_key_values.{i}.{n}" for i in layers for n in names]
            self.moves_with_beam = [(k % 4) < 2 for k in range(len(self.present_names))]
            self.states_in_cache = False
        elif layout == "self":
            self.present_names = [f"present.{i}.{kv}" for i in layers for kv in ("key", "value")]
            self.past_names = [*(f"past_key_values.{i}.{kv}" for i in layers for kv in ("key", "value")),
                               "encoder_hidden_states"]  # fmt: skip
            self.moves_with_beam = [True] * len(self.present_names) + [False]
            self.states_in_cache = True
        else:
            raise ModelFormatError(f"{self.model_dir}: unknown cache_layout {layout!r} in sparkvision.json")
        #: The step graph takes the fixed entries once per image, its beams' rows consecutive.
        self.shares_fixed = layout == "cross" and bool(extra.get("cross_shared_by_beams", False))
        self.grown = [k for k, moves in enumerate(self.moves_with_beam) if moves]
        self.grown_names = [self.present_names[k] for k in self.grown]

    @property
    def has_cache(self) -> bool:
        """Whether the model has a step graph on top of cached key/values."""
        return self.step_file is not None

    def _engine(self, file: str) -> Any:
        return get_engine(self.model_dir / file, self.threads)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """``pixel_values`` (N×3×S×S) → ``encoder_hidden_states`` (N×patches×width)."""
        return self._engine(self.encoder_file).run({"pixel_values": pixels}, [self.encoder_output])[0]

    def start(self, input_ids: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The first step: logits of the last position (N×vocab, float32) and the cache."""
        out = self._engine(self.decoder_file).run(
            {"input_ids": input_ids.astype(np.int64), "encoder_hidden_states": states},
            ["logits", *self.present_names],
        )
        cache = [*out[1:], states] if self.states_in_cache else out[1:]
        return np.ascontiguousarray(out[0][:, -1, :], dtype=np.float32), cache

    def step(self, input_ids: np.ndarray, cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One step on top of ``cache``: logits (N×vocab) and the grown cache."""
        if self.step_file is None:
            raise ModelFormatError(f"{self.model_dir}: this model has no decoder graph with past key/values")
        feeds = {"input_ids": input_ids.astype(np.int64), **dict(zip(self.past_names, cache))}
        out = self._engine(self.step_file).run(feeds, ["logits", *self.grown_names])
        grown = list(cache)
        for index, value in zip(self.grown, out[1:]):
            grown[index] = value
        return np.ascontiguousarray(out[0][:, -1, :], dtype=np.float32), grown

    def logits_without_cache(self, sequences: np.ndarray, states: np.ndarray) -> np.ndarray:
        """The last position's logits recomputed from the whole sequence (the reference for the cache)."""
        out = self._engine(self.decoder_file).run(
            {"input_ids": sequences.astype(np.int64), "encoder_hidden_states": states}, ["logits"]
        )
        return np.ascontiguousarray(out[0][:, -1, :], dtype=np.float32)


def _take(
    cache: list[np.ndarray], rows: np.ndarray, moves_with_beam: Sequence[bool], *, fixed: bool
) -> list[np.ndarray]:
    """The cache of ``rows``; entries fixed for an image are left alone unless ``fixed``."""
    return [entry[rows] if fixed or moves else entry for entry, moves in zip(cache, moves_with_beam)]


class _Decoder:
    """Logits for the next token of each running row, with or without the key/value cache.

    ``group``: rows per image that stay together (beam search's beams; 1 when rows leave one by one).
    When the runner shares fixed entries, those are kept once per group, not once per row.
    """

    def __init__(self, runner: Seq2SeqRunner, states: np.ndarray, use_cache: bool, group: int = 1) -> None:
        self.runner = runner
        self.states = states  # one row per running sequence
        self.use_cache = use_cache and runner.has_cache
        self.group = group if runner.shares_fixed else 1
        self.cache: list[np.ndarray] = []

    def first(self, start: np.ndarray, repeat: int) -> np.ndarray:
        """Logits after the start token; the rows of each image are identical, so the step runs once
        per image and its results are repeated ``repeat`` times."""
        logits, cache = self.runner.start(start[::repeat], self.states[::repeat])
        if repeat > 1:
            logits = np.repeat(logits, repeat, axis=0)
            shared = self.group == repeat
            moves = self.runner.moves_with_beam
            cache = [
                entry if shared and not m else np.repeat(entry, repeat, axis=0)
                for entry, m in zip(cache, moves)
            ]
        self.cache = cache
        return logits

    def next(self, sequences: np.ndarray) -> np.ndarray:
        if not self.use_cache:
            return self.runner.logits_without_cache(sequences, self.states)
        logits, self.cache = self.runner.step(sequences[:, -1:], self.cache)
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        """Beams moved within their image: only self-attention entries move."""
        if self.use_cache:
            self.cache = _take(self.cache, rows, self.runner.moves_with_beam, fixed=False)

    def keep(self, rows: np.ndarray) -> None:
        """Only ``rows`` keep running (whole groups when ``group`` > 1)."""
        self.states = self.states[rows]
        if self.use_cache:
            images = rows[:: self.group] // self.group
            self.cache = [
                entry[rows] if m or self.group == 1 else entry[images]
                for entry, m in zip(self.cache, self.runner.moves_with_beam)
            ]


# -- logits processors (transformers' order) ----------------------------------------------------------------
def _process(
    scores: np.ndarray, sequences: np.ndarray, config: GenerationConfig, min_keep: int
) -> np.ndarray:
    """Repetition penalty, no-repeat n-grams, minimum length, then (sampling) temperature, top-k, top-p."""
    rows = np.arange(scores.shape[0])[:, None]
    if config.repetition_penalty != 1.0:
        seen = np.take_along_axis(scores, sequences, axis=1)
        penalised = np.where(seen < 0, seen * config.repetition_penalty, seen / config.repetition_penalty)
        scores[rows, sequences] = penalised.astype(np.float32)
    n = config.no_repeat_ngram_size
    length = sequences.shape[1]
    if n > 0 and length >= n:
        for row in range(sequences.shape[0]):
            tokens = sequences[row]
            prefix = tokens[length - n + 1 :]
            for start in range(length - n + 1):
                if np.array_equal(tokens[start : start + n - 1], prefix):
                    scores[row, tokens[start + n - 1]] = -np.inf
    if config.min_length > 0 and length < config.min_length and config.eos_token_id:
        scores[:, list(config.eos_token_id)] = -np.inf
    if config.do_sample:
        if config.temperature != 1.0:
            scores = (scores / np.float32(config.temperature)).astype(np.float32)
        if config.top_k:
            k = min(max(config.top_k, min_keep), scores.shape[1])
            kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
            scores = np.where(scores < kth, -np.inf, scores).astype(np.float32)
        if config.top_p < 1.0:
            order = np.argsort(scores, axis=1, kind="stable")
            ascending = np.take_along_axis(scores, order, axis=1)
            cumulative = np.cumsum(_softmax(ascending), axis=1)
            remove = cumulative <= (1 - config.top_p)
            remove[:, -min_keep:] = False
            mask = np.zeros_like(remove)
            np.put_along_axis(mask, order, remove, axis=1)
            scores = np.where(mask, -np.inf, scores).astype(np.float32)
    return scores


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, computed in ``x`` (float32 logits the caller owns): two passes
    over the vocabulary fewer than with temporaries, the same numbers."""
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def _draw(probabilities: np.ndarray, generator: np.random.Generator, count: int = 1) -> np.ndarray:
    """``count`` distinct token ids drawn in proportion to ``probabilities`` (one row)."""
    p = probabilities.astype(np.float64)
    p /= p.sum()
    if count == 1:
        return np.array(
            [min(int(np.searchsorted(np.cumsum(p), generator.random(), side="right")), p.size - 1)]
        )
    return generator.choice(p.size, size=count, replace=False, p=p)


# -- generation -------------------------------------------------------------------------------------------
def generate(
    runner: Seq2SeqRunner,
    pixels: np.ndarray,
    config: GenerationConfig,
    *,
    use_cache: bool = True,
    seeds: Sequence[int] | None = None,
) -> list[list[GeneratedSequence]]:
    """Generate for a batch of preprocessed images: per image, ``num_return_sequences`` sequences, best first.

    ``seeds`` (sampling only) gives each image its own generator stream (default: derived from
    ``config.seed`` and the image's position in this batch).
    """
    if pixels.shape[0] == 0:
        return []
    states = runner.encode(pixels)
    count = pixels.shape[0]
    if config.do_sample:
        base = seeds if seeds is not None else [i for i in range(count)]
        entropy = [] if config.seed is None else [int(config.seed)]
        generators = [np.random.default_rng([*entropy, int(s)] if entropy else None) for s in base]
    else:
        generators = []
    if config.num_beams > 1:
        return _beam_search(runner, states, config, use_cache, generators)
    return _greedy_or_sample(runner, states, config, use_cache, generators)


def _greedy_or_sample(
    runner: Seq2SeqRunner,
    states: np.ndarray,
    config: GenerationConfig,
    use_cache: bool,
    generators: list[np.random.Generator],
) -> list[list[GeneratedSequence]]:
    copies = config.num_return_sequences
    rows = states.shape[0] * copies
    decoder = _Decoder(runner, np.repeat(states, copies, axis=0), use_cache)
    sequences = np.full((rows, 1), config.decoder_start_token_id, dtype=np.int64)
    finished_at = np.full(rows, -1, dtype=np.int64)  # length when the row finished
    eos = np.array(config.eos_token_id, dtype=np.int64)
    running = np.arange(rows)  # the original row of each running row
    logits = decoder.first(sequences, copies)
    output = np.full((rows, config.total_length), config.pad_token_id, dtype=np.int64)
    output[:, 0] = config.decoder_start_token_id
    while True:
        length = sequences.shape[1]
        scores = _process(logits, sequences, config, min_keep=1)
        if config.do_sample:
            probabilities = _softmax(scores.astype(np.float64))
            tokens = np.array(
                [_draw(probabilities[i], generators[running[i] // copies])[0] for i in range(len(running))],
                dtype=np.int64,
            )
        else:
            tokens = np.argmax(scores, axis=1)
        sequences = np.concatenate([sequences, tokens[:, None]], axis=1)
        output[running, length] = tokens
        done = np.isin(tokens, eos) | (length + 1 >= config.total_length)
        finished_at[running[done]] = length + 1
        if done.all():
            break
        if done.any():
            keep = np.flatnonzero(~done)
            running, sequences = running[keep], sequences[keep]
            decoder.keep(keep)
        logits = decoder.next(sequences)
    results: list[list[GeneratedSequence]] = []
    for image in range(states.shape[0]):
        group = []
        for row in range(image * copies, (image + 1) * copies):
            group.append(GeneratedSequence(tuple(int(t) for t in output[row, 1 : finished_at[row]])))
        results.append(group)
    return results


def _beam_search(
    runner: Seq2SeqRunner,
    states: np.ndarray,
    config: GenerationConfig,
    use_cache: bool,
    generators: list[np.random.Generator],
) -> list[list[GeneratedSequence]]:
    """transformers 5's vectorised beam search (``GenerationMixin._beam_search``), image by image
    leaving the batch once its finished beams can no longer change."""
    images, beams = states.shape[0], config.num_beams
    max_length, prompt = config.total_length, 1
    keep_count = max(2, 1 + len(config.eos_token_id)) * beams
    eos = np.array(config.eos_token_id, dtype=np.int64)
    fill = config.pad_token_id
    decoder = _Decoder(runner, np.repeat(states, beams, axis=0), use_cache, group=beams)

    running_seqs = np.full((images, beams, max_length), fill, dtype=np.int64)
    running_seqs[:, :, 0] = config.decoder_start_token_id
    running_scores = np.zeros((images, beams), dtype=np.float32)
    running_scores[:, 1:] = _NEG
    seqs = running_seqs.copy()
    scores = np.full((images, beams), _NEG, dtype=np.float32)
    lengths = np.zeros((images, beams), dtype=np.int64)
    finished = np.zeros((images, beams), dtype=bool)
    improvable = np.ones((images, 1), dtype=bool)
    top_mask = np.zeros(keep_count, dtype=bool)
    top_mask[:beams] = True

    active = np.arange(images)  # images still searching
    final_seqs, final_scores, final_lengths = seqs.copy(), scores.copy(), lengths.copy()
    cur_len = 1
    logits = decoder.first(running_seqs[:, :, :1].reshape(images * beams, 1), beams)
    while True:
        count = len(active)
        flat = running_seqs[:, :, :cur_len].reshape(count * beams, cur_len)
        log_probs = _process(_log_softmax(logits), flat, config, min_keep=len(config.eos_token_id) + 1)
        vocab = log_probs.shape[1]
        accumulated = (log_probs.reshape(count, beams, vocab) + running_scores[:, :, None]).reshape(count, -1)
        if config.do_sample:
            probabilities = _softmax(accumulated.astype(np.float64))
            picks = np.stack(
                [_draw(probabilities[i], generators[active[i]], keep_count) for i in range(count)]
            )
            picked = np.take_along_axis(accumulated, picks, axis=1)
            order = np.argsort(-picked, axis=1, kind="stable")
            top_scores, top_indices = (
                np.take_along_axis(picked, order, axis=1),
                np.take_along_axis(picks, order, axis=1),
            )
        else:
            top_indices = _top(accumulated, keep_count)
            top_scores = np.take_along_axis(accumulated, top_indices, axis=1)
        source_beam = top_indices // vocab
        top_seqs = np.take_along_axis(running_seqs, source_beam[:, :, None], axis=1)
        top_seqs[:, :, cur_len] = top_indices % vocab
        hits = np.isin(top_seqs[:, :, cur_len], eos) | (cur_len + 1 >= max_length)

        # e. the best unfinished continuations keep running
        running_candidates = (top_scores + hits.astype(np.float32) * _NEG).astype(np.float32)
        chosen = _top(running_candidates, beams)
        running_seqs = np.take_along_axis(top_seqs, chosen[:, :, None], axis=1)
        running_scores = np.take_along_axis(running_candidates, chosen, axis=1)
        moved_from = np.take_along_axis(source_beam, chosen, axis=1)

        # f. finished continuations among the top `beams` may enter the finished set
        just_finished = hits & top_mask[None, :]
        penalised = (top_scores / np.float32((cur_len + 1 - prompt) ** config.length_penalty)).astype(
            np.float32
        )
        full = finished.all(axis=1, keepdims=True) & (config.early_stopping is True)
        penalised = penalised + full.astype(np.float32) * _NEG
        penalised = penalised + (~improvable).astype(np.float32) * _NEG
        penalised = penalised + (~just_finished).astype(np.float32) * _NEG
        merged_scores = np.concatenate([scores, penalised], axis=1)
        merged_seqs = np.concatenate([seqs, top_seqs], axis=1)
        merged_lengths = np.concatenate([lengths, np.full_like(source_beam, cur_len + 1)], axis=1)
        merged_finished = np.concatenate([finished, just_finished], axis=1)
        best = _top(merged_scores, beams)
        seqs = np.take_along_axis(merged_seqs, best[:, :, None], axis=1)
        scores = np.take_along_axis(merged_scores, best, axis=1)
        lengths = np.take_along_axis(merged_lengths, best, axis=1)
        finished = np.take_along_axis(merged_finished, best, axis=1)

        # g. stopping: the heuristic of transformers' _check_early_stop_heuristic
        cur_len += 1
        if config.early_stopping == "never" and config.length_penalty > 0.0:
            hypothetical = max_length - prompt
        else:
            hypothetical = cur_len - prompt
        best_possible = running_scores[:, :1] / np.float32(hypothetical**config.length_penalty)
        worst = np.where(finished, scores.min(axis=1, keepdims=True), _NEG)
        improvable = improvable & np.any(best_possible > worst, axis=-1, keepdims=True)
        settled = ~improvable[:, 0] | (finished.all(axis=1) & (config.early_stopping is True))
        if hits.all() or settled.all():
            final_seqs[active], final_scores[active], final_lengths[active] = seqs, scores, lengths
            break
        rows = (np.arange(count)[:, None] * beams + moved_from).reshape(-1)
        decoder.reorder(rows)
        if settled.any():
            done, stay = np.flatnonzero(settled), np.flatnonzero(~settled)
            final_seqs[active[done]], final_scores[active[done]] = seqs[done], scores[done]
            final_lengths[active[done]] = lengths[done]
            active = active[stay]
            running_seqs, running_scores = running_seqs[stay], running_scores[stay]
            seqs, scores, lengths, finished = seqs[stay], scores[stay], lengths[stay], finished[stay]
            improvable = improvable[stay]
            decoder.keep((stay[:, None] * beams + np.arange(beams)[None, :]).reshape(-1))
        logits = decoder.next(running_seqs[:, :, :cur_len].reshape(len(active) * beams, cur_len))

    results: list[list[GeneratedSequence]] = []
    for image in range(images):
        group = []
        for beam in range(config.num_return_sequences):
            end = int(final_lengths[image, beam])
            tokens = tuple(int(t) for t in final_seqs[image, beam, 1:end]) if end else ()
            group.append(GeneratedSequence(tokens, float(final_scores[image, beam])))
        results.append(group)
    return results


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values per row, largest first (ties: lower index first)."""
    if values.shape[1] > 4 * k:  # a partial selection first: beams × vocabulary candidates per image
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(values, part, axis=1).min(axis=1, keepdims=True)
        if (np.sum(values >= kth, axis=1) == k).all():  # no ties at the boundary: the selection is exact
            order = np.lexsort((part, -np.take_along_axis(values, part, axis=1)), axis=1)
            return np.take_along_axis(part, order, axis=1)
    return np.argsort(-values, axis=1, kind="stable")[:, :k]


# -- text ---------------------------------------------------------------------------------------------------
_CLEANUPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


def decode_tokens(
    tokenizer: Any, sequences: Sequence[Sequence[int]], *, clean_up_spaces: bool = False
) -> list[str]:
    """Token ids → text with a ``tokenizers.Tokenizer``, special tokens skipped, as transformers'
    ``decode(skip_special_tokens=True)`` does (with its ``clean_up_tokenization_spaces`` rule when set)."""
    texts = tokenizer.decode_batch([list(s) for s in sequences], skip_special_tokens=True)
    if clean_up_spaces:
        for index, text in enumerate(texts):
            for before, after in _CLEANUPS:
                text = text.replace(before, after)
            texts[index] = text
    return texts
