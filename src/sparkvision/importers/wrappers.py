"""torch modules that give each imported network the exact inputs and outputs of our model format.

Imported only while importing (torch is an optional dependency): ``pixel_values`` in, ``logits`` and
``embeddings`` out for classifiers; projected image / text embeddings for CLIP's two towers.
"""

from __future__ import annotations

from typing import Any

import torch

from .common import call_with_head_input

__all__ = ["CLIPImageTower", "CLIPTextTower", "HFClassifier", "TimmClassifier"]


def _pooled(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` holds the projection; 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFClassifier(torch.nn.Module):
    """``pixel_values → (logits, embeddings)``; the embeddings are what enters the classification head."""

    def __init__(self, model: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, features = call_with_head_input(
            self.model, self.head, lambda: self.model(pixel_values=pixel_values, return_dict=True)
        )
        return out.logits, features


class TimmClassifier(torch.nn.Module):
    """A timm model as ``pixel_values → (logits, embeddings)`` (embeddings: ``forward_head(pre_logits=True)``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(pixel_values)
        embeddings = self.model.forward_head(features, pre_logits=True)
        return self.model.forward_head(features), embeddings.flatten(1)


class CLIPImageTower(torch.nn.Module):
    """``pixel_values → embeddings``: CLIP's projected image features, before normalisation."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_image_features(pixel_values=pixel_values))


class CLIPTextTower(torch.nn.Module):
    """``input_ids → text_embeddings``: CLIP's projected text features, before normalisation.

    Sequences are padded after their end-of-text token; CLIP's causal attention never lets a token see
    later positions, so the pooled end-of-text features do not depend on the padding (no mask needed).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return _pooled(self.model.get_text_features(input_ids=input_ids))
