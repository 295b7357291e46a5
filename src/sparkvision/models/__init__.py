"""Models: what a model is (:mod:`.spec`), where models live (:mod:`.store`), which ones we know
(:mod:`.catalogue`), and the converters that build them."""

from .catalogue import DEFAULT_MODEL, CatalogueEntry, list_models, resolve_model
from .spec import MODEL_FORMAT_VERSION, ModelSpec

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_FORMAT_VERSION",
    "CatalogueEntry",
    "ModelSpec",
    "list_models",
    "resolve_model",
]
