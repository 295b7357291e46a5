"""torch modules that cut a ``VisionEncoderDecoderModel`` into the three graphs of a captioning model.

Imported only while importing (torch is an optional dependency):

* :class:`CaptionEncoder`: ``pixel_values`` → ``encoder_hidden_states`` (the encoder's last hidden state,
  projected to the decoder's width when the checkpoint has ``enc_to_dec_proj``);
* :class:`CaptionDecoderFirst`: ``input_ids`` + ``encoder_hidden_states`` → ``logits`` and every layer's
  key/values: self-attention (grows by one position per step) and cross-attention (fixed for an image);
* :class:`CaptionDecoderWithPast`: one step on top of those key/values → ``logits`` and the grown
  self-attention key/values. Cross-attention key/values go in and are never recomputed, once per
  *image*: the rows of a step are the images' beams, consecutive, and each image's beams attend to
  the same cross-attention key/values (:func:`shared_cross_attention`), so beam search reads them
  once per image instead of once per beam.

The decoder itself is transformers' own module, driven through its ``EncoderDecoderCache``; the
wrappers only turn the cache into plain tensors, so the exported graphs compute exactly what
transformers' ``generate()`` computes at each step.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch

__all__ = ["CaptionDecoderFirst", "CaptionDecoderWithPast", "CaptionEncoder", "past_names", "present_names"]


def present_names(layers: int) -> list[str]:
    """Output names of the key/values, per layer: self key, self value, cross key, cross value."""
    return [
        f"present.{i}.{side}.{kv}"
        for i in range(layers)
        for side in ("decoder", "encoder")
        for kv in ("key", "value")
    ]


def past_names(layers: int) -> list[str]:
    """Input names of the key/values of the step graph, in :func:`present_names` order."""
    return [name.replace("present.", "past_key_values.", 1) for name in present_names(layers)]


class CaptionEncoder(torch.nn.Module):
    """``pixel_values → encoder_hidden_states`` exactly as the model feeds them to its decoder."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.projection = getattr(model, "enc_to_dec_proj", None)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(pixel_values=pixel_values, return_dict=True).last_hidden_state
        return self.projection(hidden) if self.projection is not None else hidden


#: The attention implementation name the step graph is traced with (see :func:`shared_cross_attention`).
SHARED_CROSS_ATTENTION = "sparkvision_shared_cross"


def shared_cross_attention(base: Any) -> Any:
    """An attention function for transformers' attention interface: self-attention is ``base``
    unchanged; cross-attention accepts key/values for fewer rows than the queries (one per image, the
    query rows being its consecutive beams). The queries of one image's beams are stacked along the
    query axis, attend together with ``base``, and are split back: each row's numbers are those of
    ``base`` on repeated key/values, without the repetition."""

    def attention(
        module: Any,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Any]:
        if not getattr(module, "is_cross_attention", False) or attention_mask is not None:
            return base(module, query, key, value, attention_mask, **kwargs)
        rows, heads, length, width = query.shape
        images = key.shape[0]
        stacked = (
            query.reshape(images, -1, heads, length, width).transpose(1, 2).reshape(images, heads, -1, width)
        )
        output, weights = base(
            module, stacked, key, value, None, **kwargs
        )  # images × (beams·length) × heads × width
        return output.reshape(rows, length, heads, width), weights

    return attention


class _SharedCrossAttention:
    """Within the block, the decoder's attention runs through :func:`shared_cross_attention`."""

    def __init__(self, decoder: Any) -> None:
        self.config = decoder.config
        self.saved = None

    def __enter__(self) -> None:
        from transformers import AttentionInterface
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self.saved = self.config._attn_implementation
        base = ALL_ATTENTION_FUNCTIONS.get(self.saved) if self.saved != "eager" else None
        if base is None:
            from transformers.models.gpt2.modeling_gpt2 import eager_attention_forward as base
        AttentionInterface.register(SHARED_CROSS_ATTENTION, shared_cross_attention(base))
        self.config._attn_implementation = SHARED_CROSS_ATTENTION

    def __exit__(self, *exc: Any) -> None:
        self.config._attn_implementation = self.saved


def _cache_keyword(decoder: Any) -> str:
    """transformers 5 names the argument ``cache``; earlier releases ``past_key_values``."""
    parameters = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _flatten(cache: Any, layers: int) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for i in range(layers):
        own = cache.self_attention_cache.layers[i]
        cross = cache.cross_attention_cache.layers[i]
        out += [own.keys, own.values, cross.keys, cross.values]
    return out


class CaptionDecoderFirst(torch.nn.Module):
    """The first decoder call (no past): logits for every position plus all key/values.

    With the whole sequence as ``input_ids`` it is also the decoder without a cache, which the tests
    use to check that the cached path changes nothing.
    """

    def __init__(self, model: Any, layers: int) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.layers = layers
        self.keyword = _cache_keyword(model.decoder)

    def forward(
        self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        out = self.decoder(
            input_ids=input_ids,
            encoder_hidden_states=encoder_hidden_states,
            use_cache=True,
            return_dict=True,
            **{self.keyword: cache},
        )
        return (out.logits, *_flatten(cache, self.layers))


class CaptionDecoderWithPast(torch.nn.Module):
    """One decoder step on top of cached key/values: ``(input_ids, *past) → (logits, *present self k/v)``.

    With ``shared``, the cross-attention key/values have one row per image and the other inputs one
    row per beam (an image's beams consecutive); see :func:`shared_cross_attention`.
    """

    def __init__(self, model: Any, layers: int, hidden_size: int, *, shared: bool = False) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.layers = layers
        self.hidden_size = hidden_size
        self.keyword = _cache_keyword(model.decoder)
        self.shared = shared

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import EncoderDecoderCache

        groups = [tuple(past[4 * i : 4 * i + 4]) for i in range(self.layers)]
        cache = EncoderDecoderCache(groups)  # cross-attention layers filled: marked as computed
        past_length = past[0].shape[2]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) + past_length
        # The decoder only takes its cross-attention branch when it is given encoder states; with the
        # cross key/values cached it never reads them, so a one-position stand-in is enough.
        stand_in = past[2].new_zeros((input_ids.shape[0], 1, self.hidden_size))
        with _SharedCrossAttention(self.decoder) if self.shared else contextlib.nullcontext():
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=stand_in,
                position_ids=positions,
                use_cache=True,
                return_dict=True,
                **{self.keyword: cache},
            )
        own: list[torch.Tensor] = []
        for i in range(self.layers):
            layer = cache.self_attention_cache.layers[i]
            own += [layer.keys, layer.values]
        return (out.logits, *own)
