"""Bring your own model: turn a Hugging Face checkpoint, a timm model or an ONNX file into a model directory.

One entry point serves the CLI (``sparkvision import``), the Python API and the Spark stages
(``loadSavedModel``)::

    from sparkvision.importers import import_model

    path = import_model("./vit-base-patch16-224")                       # local HF checkpoint dir
    path = import_model("timm:resnet50.a1_in1k", weights="resnet50.safetensors")
    path = import_model("model.onnx", labels="labels.txt", preprocess=PreprocessSpec(size=224))
    path = import_model("hf:google/vit-base-patch16-224")                # download, then import
    path = import_model("vit_base_patch16_224")                          # a catalogue name

The result is a directory holding ``model.onnx`` + ``sparkvision.json`` that only ONNX Runtime needs.
Importing needs the ``import`` extra (torch, transformers, safetensors, huggingface_hub; timm for timm
models); running the imported model never does. Models are written to a temporary sibling directory
and renamed into place when complete, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, ModelImportError
from ..labels import imagenet1k_labels
from ..models.spec import ModelSpec
from ..models.store import (
    build_model_dir,
    cached_model_dir,
    is_model_dir,
    load_model_dir,
    validate_model_name,
)
from ..preprocess import PreprocessSpec
from .common import read_labels_file

__all__ = ["default_name", "import_model", "resolve_labels", "source_kind"]

log = logging.getLogger(__name__)

#: ``labels=`` shortcut for the 1000 ImageNet-1k classes in standard order.
IMAGENET_1K = "imagenet-1k"


def source_kind(source: str | Path) -> str:
    """What ``source`` is: ``"model-dir"``, ``"huggingface"``, ``"vision-encoder-decoder"`` (a Hugging Face
    captioning checkpoint), ``"timm-dir"``, ``"timm"``, ``"onnx"``, ``"sparknlp-export"`` (Spark NLP's
    ONNX export folder), ``"sparknlp-caption-export"`` (the same for a captioning model), ``"hub"`` (``hf:org/repo``) or
    ``"catalogue"`` (a name)."""
    text = str(source)
    if text.startswith("timm:"):
        return "timm"
    if text.startswith("hf:"):
        return "hub"
    path = Path(text).expanduser()
    if path.is_dir():
        if is_model_dir(path):
            return "model-dir"
        from .sparknlp_export import is_sparknlp_export

        if is_sparknlp_export(path):
            return "sparknlp-export"
        from .sparknlp_caption_export import is_sparknlp_caption_export

        if is_sparknlp_caption_export(path):
            return "sparknlp-caption-export"
        config = path / "config.json"
        if config.is_file():
            import json

            try:
                data = json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelImportError(f"{config} cannot be read: {exc}") from exc
            if isinstance(data, dict) and "architecture" in data and "pretrained_cfg" in data:
                return "timm-dir"
            if isinstance(data, dict) and data.get("model_type") == "vision-encoder-decoder":
                return "vision-encoder-decoder"
        return "huggingface"
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return "onnx"
        raise ModelImportError(
            f"{path} is a file sparkvision cannot import: give a Hugging Face checkpoint directory, an .onnx "
            f"file, or timm:ARCH --weights {path.name}"
        )
    if isinstance(source, Path) or "/" in text or "\\" in text or text.startswith("."):
        raise ModelImportError(f"{text} does not exist")
    return "catalogue"


def default_name(source: str | Path) -> str:
    """The cache name an import gets when none is given: the directory, file or architecture name."""
    text = str(source)
    for prefix in ("timm:", "hf:"):
        text = text.removeprefix(prefix)
    path = Path(text.rstrip("/\\"))
    stem = path.stem if path.suffix.lower() == ".onnx" else path.name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return name or "imported_model"


def resolve_labels(labels: Sequence[str] | str | Path | None) -> tuple[str, ...] | None:
    """Labels given as a sequence, a labels file path, or ``"imagenet-1k"``."""
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        if str(labels) == IMAGENET_1K:
            return imagenet1k_labels()
        return read_labels_file(labels)
    result = tuple(str(label) for label in labels)
    if not result:
        raise ConfigError("the label list is empty")
    return result


def import_model(
    source: str | Path,
    name: str | None = None,
    *,
    cache: bool = True,
    output_dir: str | Path | None = None,
    replace: bool = False,
    weights: str | Path | None = None,
    labels: Sequence[str] | str | Path | None = None,
    preprocess: PreprocessSpec | None = None,
    activation: str | None = None,
    output: str | None = None,
    embeddings_output: str | None = None,
    license: str | None = None,
) -> Path:
    """Turn ``source`` into a sparkvision model directory and return its path.

    Args:
        source: a Hugging Face checkpoint directory, ``timm:ARCH`` (with ``weights``), an ``.onnx`` file
            (with ``labels`` and ``preprocess``), ``hf:ORG/REPO`` (downloaded), a catalogue name (built
            into the cache if needed) or an existing model directory (returned as is).
        name: the model's name (default: from the source). It names the cache directory.
        cache: write into the sparkvision cache (``$SPARKVISION_HOME/models/<name>``); when false and no
            ``output_dir`` is given, the model goes to a new temporary directory.
        output_dir: write the model directory exactly here instead.
        replace: overwrite an existing model of that name. Without it, importing the same weights again
            returns the existing directory and different weights raise :class:`ModelImportError`.
        weights: the weights file (``.safetensors`` preferred) for ``timm:ARCH``.
        labels: labels in output order (sequence, labels file, or ``"imagenet-1k"``); overrides the
            checkpoint's own. Required for ONNX files.
        preprocess: preprocessing; required for ONNX files, overrides the checkpoint's otherwise.
        activation: ``"softmax"`` or ``"sigmoid"`` (default: from the checkpoint; softmax for ONNX).
        output / embeddings_output: ONNX output names holding the scores / the features.
        license: the licence to record (default: the model card's or timm's).
    """
    kind = source_kind(source)
    if kind == "model-dir":
        load_model_dir(source)
        return Path(source).expanduser()
    if activation not in (None, "softmax", "sigmoid", "none"):
        raise ConfigError(f"activation must be softmax, sigmoid or none, got {activation!r}")
    if kind == "catalogue":
        from ..models.catalogue import get_entry, resolve_model

        if get_entry(str(source)) is None:
            raise ModelImportError(
                f"{source!s} is neither a path nor a known model name; give a Hugging Face checkpoint "
                f"directory, an .onnx file, timm:ARCH --weights FILE or hf:ORG/REPO"
            )
        path, _ = resolve_model(str(source), rebuild=replace)
        return path

    label_list = resolve_labels(labels)
    name = validate_model_name(name or default_name(source))
    if output_dir is not None:
        target = Path(output_dir).expanduser()
    elif cache:
        target = cached_model_dir(name)
    else:
        target = Path(tempfile.mkdtemp(prefix="sparkvision-import-")) / name

    build = _builder(
        kind, source, name, weights=weights, labels=label_list, preprocess=preprocess,
        activation=activation, output=output, embeddings_output=embeddings_output, license=license,
    )  # fmt: skip
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()  # an empty output directory is just a place to put the model
    if target.exists() and not replace:
        overrides = (labels, preprocess, activation, output, embeddings_output, license)
        return _existing(target, source, kind, weights, any(o is not None for o in overrides))
    log.info("importing %s into %s", source, target)
    build_model_dir(target, build, replace=replace)
    return target


def _builder(kind: str, source: str | Path, name: str, **options: object):  # type: ignore[no-untyped-def]
    labels = options["labels"]
    preprocess = options["preprocess"]
    activation = options["activation"]
    license = options["license"]

    def build(directory: Path) -> ModelSpec:
        if kind == "sparknlp-export":
            from .sparknlp_export import import_sparknlp_export

            return import_sparknlp_export(Path(source), directory, name=name, license=license)  # type: ignore[arg-type]
        if kind == "sparknlp-caption-export":
            from .sparknlp_caption_export import import_sparknlp_caption_export

            return import_sparknlp_caption_export(Path(source), directory, name=name, license=license)  # type: ignore[arg-type]
        if kind in ("huggingface", "hub", "vision-encoder-decoder"):
            from .huggingface import import_hf_checkpoint

            checkpoint, src = _checkpoint(source, name)
            if kind == "vision-encoder-decoder" or _is_captioning_checkpoint(checkpoint):
                return _import_captioning(checkpoint, directory, name, src, options)
            return import_hf_checkpoint(
                checkpoint, directory, name=name, labels=labels, activation=activation,  # type: ignore[arg-type]
                preprocess=preprocess, source=src, license=license,  # type: ignore[arg-type]
            )  # fmt: skip
        if kind in ("timm", "timm-dir"):
            from .timm_import import import_timm

            arch = str(source).removeprefix("timm:") if kind == "timm" else None
            weights = Path(str(options["weights"])) if options["weights"] else None
            if kind == "timm-dir":
                weights = Path(source)
            return import_timm(
                arch, weights, directory, name=name, labels=labels, activation=activation,  # type: ignore[arg-type]
                preprocess=preprocess, license=license,  # type: ignore[arg-type]
            )  # fmt: skip
        from .onnx_file import import_onnx_file

        if labels is None or preprocess is None:
            missing = " and ".join(
                what for what, value in (("labels", labels), ("preprocessing", preprocess)) if value is None
            )
            raise ModelImportError(
                f"an ONNX file carries no {missing}: give them, e.g. sparkvision import {Path(source).name} "
                f"--labels labels.txt --size 224 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225"
            )
        return import_onnx_file(
            Path(source), directory, name=name, labels=labels, preprocess=preprocess,  # type: ignore[arg-type]
            activation=activation, output=options["output"], embeddings_output=options["embeddings_output"],  # type: ignore[arg-type]
            license=license,  # type: ignore[arg-type]
        )  # fmt: skip

    return build


def _is_captioning_checkpoint(checkpoint: Path) -> bool:
    import json

    try:
        data = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "vision-encoder-decoder"


def _import_captioning(
    checkpoint: Path, directory: Path, name: str, source: str | None, options: dict[str, object]
) -> ModelSpec:
    """A ``VisionEncoderDecoderModel`` checkpoint: a captioning model (labels and activation do not apply)."""
    from .vision_encoder_decoder import import_vision_encoder_decoder

    given = [
        flag for flag, key in (("labels", "labels"), ("activation", "activation")) if options[key] is not None
    ]
    if given:
        raise ModelImportError(
            f"{checkpoint} is a captioning model: {' and '.join(given)} do not apply to it"
        )
    return import_vision_encoder_decoder(
        checkpoint, directory, name=name, preprocess=options["preprocess"], source=source,  # type: ignore[arg-type]
        license=options["license"],  # type: ignore[arg-type]
    )  # fmt: skip


def _checkpoint(source: str | Path, name: str) -> tuple[Path, str | None]:
    text = str(source)
    if text.startswith("hf:"):
        from .hub import download_checkpoint

        repo = text.removeprefix("hf:")
        return download_checkpoint(repo, name=name), text
    return Path(text).expanduser(), None


def _existing(
    target: Path, source: str | Path, kind: str, weights: str | Path | None, overrides: bool
) -> Path:
    """An import whose target exists: the same weights with no options give the same model, anything
    else is refused (``replace=True`` / ``--force`` overwrites)."""
    try:
        spec = load_model_dir(target)
    except Exception as exc:
        raise ModelImportError(
            f"{target} exists but is not a usable model ({exc}); pass replace=True (--force) to overwrite it"
        ) from exc
    digest = None if overrides else _source_digest(source, kind, weights)
    if digest is not None and digest == spec.weights_sha256:
        log.info("%s is already imported as %s", source, target)
        return target
    raise ModelImportError(
        f"a {'' if overrides else 'different '}model named {spec.name!r} already exists at {target}; choose "
        f"another name (--name) or overwrite it (--force / replace=True)"
    )


def _source_digest(source: str | Path, kind: str, weights: str | Path | None) -> str | None:
    from .common import sha256_files

    try:
        if kind in ("huggingface", "vision-encoder-decoder"):
            from .huggingface import checkpoint_weight_files

            return sha256_files(checkpoint_weight_files(Path(source).expanduser()))
        if kind == "timm" and weights is not None:
            return sha256_files([Path(weights)])
        if kind == "timm-dir":
            from .timm_import import _hub_directory

            return sha256_files([_hub_directory(Path(source))[0]])
        if kind == "onnx":
            return sha256_files([Path(source)])
        if kind == "sparknlp-export":
            return sha256_files([Path(source) / "model.onnx"])
        if kind == "sparknlp-caption-export":
            from .sparknlp_caption_export import graph_files

            return sha256_files(graph_files(Path(source)))
    except (ModelImportError, OSError):
        return None
    return None
