"""Catalogue entries for Hugging Face Hub models, and their download.

The seed names (Spark NLP's, e.g. ``image_classifier_vit_base_patch16_224``, and our short ones, e.g.
``vit_base_patch16_224``) map to Hugging Face repo ids. On first use :func:`download_checkpoint`
fetches the checkpoint's files with ``huggingface_hub`` (into its own cache, honouring ``HF_ENDPOINT``
and ``HF_HOME``) and the importer converts it into the sparkvision cache; later uses load the cached
model directory and need no network.

Offline (``HF_HUB_OFFLINE=1``, ``SPARKVISION_OFFLINE=1`` or no route to the Hub) the build fails fast
with a :class:`~sparkvision.errors.ModelNotFoundError` naming the repo id and the ``sparkvision import``
command that converts a local copy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelImportError, ModelNotFoundError
from .catalogue import CatalogueEntry, register
from .spec import ModelSpec

__all__ = ["HF_PREFIX", "HubModel", "download_checkpoint", "register_hub_model"]

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
#: Seconds to wait for the Hub to answer before calling it unreachable (SPARKVISION_HF_TIMEOUT).
DEFAULT_TIMEOUT = 10.0
_REQUIRED = ("config.json",)
_OPTIONAL = (
    "preprocessor_config.json",
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "SPARKVISION_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def offline_message(repo_id: str, name: str | None, reason: str) -> str:
    target = f"model {name!r}" if name else f"Hugging Face repo {repo_id}"
    as_name = f" --name {name}" if name else ""
    local = repo_id.rsplit("/", 1)[-1]
    return (
        f"{target} is not in the cache and cannot be downloaded from Hugging Face repo {repo_id} ({reason}). "
        f"On a machine with network run `sparkvision import {HF_PREFIX}{repo_id}{as_name}`; or copy the repo "
        f"(git clone https://huggingface.co/{repo_id}) and run `sparkvision import ./{local}{as_name}`"
    )


def download_checkpoint(repo_id: str, *, revision: str | None = None, name: str | None = None) -> Path:
    """Fetch a checkpoint's files from the Hub; returns the local snapshot directory.

    Downloads ``config.json``, the weights (``model.safetensors``, else its shards, else
    ``pytorch_model.bin``), ``preprocessor_config.json``, the model card and, where present, the
    tokenizer files. Files already in the Hugging Face cache are not fetched again.
    """
    if _offline():
        raise ModelNotFoundError(offline_message(repo_id, name, "offline mode is on"))
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError as exc:
        raise ModelImportError(
            f"downloading {repo_id} needs huggingface_hub (and torch + transformers to convert it): "
            f"pip install 'sparkvision[import]'"
        ) from exc
    # Read at call time (huggingface_hub reads them once, at import).
    endpoint = os.environ.get("HF_ENDPOINT") or None
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None
    )
    timeout = float(os.environ.get("SPARKVISION_HF_TIMEOUT") or DEFAULT_TIMEOUT)
    unreachable = _unreachable(endpoint or "https://huggingface.co", timeout)
    if unreachable:
        raise ModelNotFoundError(offline_message(repo_id, name, f"no network: {unreachable}"))

    def fetch(filename: str) -> Path | None:
        try:
            return Path(
                huggingface_hub.hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    endpoint=endpoint,
                    etag_timeout=timeout,
                    cache_dir=cache_dir,
                )
            )
        except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as exc:
            # Raised when the Hub cannot be reached and the file is not in the local Hub cache.
            raise ModelNotFoundError(
                offline_message(repo_id, name, f"no network: {_first_line(exc)}")
            ) from exc
        except hub_errors.EntryNotFoundError:
            return None  # this optional file is not in the repo
        except hub_errors.GatedRepoError as exc:
            raise ModelNotFoundError(
                f"{repo_id} is gated: accept its licence on the Hub and log in (hf auth login)"
            ) from exc
        except hub_errors.RepositoryNotFoundError as exc:
            raise ModelNotFoundError(
                f"Hugging Face repo {repo_id} does not exist (or is private): {_first_line(exc)}"
            ) from exc
        except hub_errors.RevisionNotFoundError as exc:
            raise ModelNotFoundError(f"{repo_id} has no revision {revision!r}") from exc
        except hub_errors.HfHubHTTPError as exc:
            raise ModelImportError(
                f"downloading {filename} from {repo_id} failed: {_first_line(exc)}"
            ) from exc
        except OSError as exc:
            raise ModelNotFoundError(
                offline_message(repo_id, name, f"no network: {_first_line(exc)}")
            ) from exc

    log.info("downloading %s from the Hugging Face Hub", repo_id)
    config = fetch(_REQUIRED[0])
    if config is None:
        raise ModelImportError(
            f"Hugging Face repo {repo_id} has no config.json: it is not a model checkpoint"
        )
    index = fetch("model.safetensors.index.json")
    if index is not None:
        import json

        for shard in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())):
            if fetch(shard) is None:
                raise ModelImportError(f"{repo_id}: weight shard {shard} is missing")
    elif not any(fetch(weights) is not None for weights in _WEIGHTS):
        raise ModelImportError(f"Hugging Face repo {repo_id} has no model.safetensors or pytorch_model.bin")
    for filename in _OPTIONAL:
        fetch(filename)
    return config.parent


def _unreachable(endpoint: str, timeout: float) -> str | None:
    """Why the Hub's host cannot be reached (one TCP connect), or ``None`` when it can.

    huggingface_hub retries failed connections with back-off for tens of seconds; this answers at
    once. Skipped behind a proxy, where only the proxy knows the way.
    """
    import socket
    from urllib.parse import urlsplit

    if any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
    ):
        return None
    url = urlsplit(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc.__class__.__name__})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class HubModel:
    """Builds one catalogue model from its Hugging Face repo (download, then import)."""

    def __init__(self, name: str, repo_id: str, license: str, importer: str = "huggingface") -> None:
        self.name = name
        self.repo_id = repo_id
        self.license = license
        self.importer = importer

    def __call__(self, directory: Path) -> ModelSpec:
        if self.importer == "timm":  # fail before downloading anything
            from ..importers.common import require

            require("timm", f"building {self.name} (a timm model; timm needs torchvision as well)")
        checkpoint = download_checkpoint(self.repo_id, name=self.name)
        source = f"{HF_PREFIX}{self.repo_id}"
        if self.importer == "timm":
            from ..importers.timm_import import import_timm

            return import_timm(
                None, checkpoint, directory, name=self.name, source=source, license=self.license
            )
        from ..importers.huggingface import import_hf_checkpoint

        return import_hf_checkpoint(
            checkpoint, directory, name=self.name, source=source, license=self.license
        )


def register_hub_model(
    name: str,
    repo_id: str,
    *,
    family: str,
    description: str,
    input_size: int,
    num_classes: int | None,
    license: str,
    task: str = "classification",
    aliases: tuple[str, ...] = (),
    importer: str = "huggingface",
) -> CatalogueEntry:
    """Add a catalogue name that is built from a Hugging Face repo on first use."""
    build: Callable[[Path], ModelSpec] = HubModel(name, repo_id, license, importer)
    return register(
        CatalogueEntry(
            name=name,
            family=family,
            description=description,
            input_size=input_size,
            num_classes=num_classes,
            license=license,
            source=f"{HF_PREFIX}{repo_id}",
            task=task,
            aliases=aliases,
            build=build,
            how_to_get=offline_message(repo_id, name, "it is built on first use"),
        )
    )


# name, repo id, family, input size, classes, licence, task, aliases, importer, description
_SEED: tuple[tuple[str, str, str, int, int | None, str, str, tuple[str, ...], str, str], ...] = (
    (
        "vit_base_patch16_224",
        "google/vit-base-patch16-224",
        "vit",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_vit_base_patch16_224",),
        "huggingface",
        "ViT-B/16, ImageNet-21k pretrained, ImageNet-1k fine-tuned",
    ),
    (
        "swin_base_patch4_window7_224",
        "microsoft/swin-base-patch4-window7-224",
        "swin",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_swin_base_patch4_window7_224",),
        "huggingface",
        "Swin-B, window 7, ImageNet-22k pretrained, ImageNet-1k fine-tuned",
    ),
    (
        "convnext_tiny_224",
        "facebook/convnext-tiny-224",
        "convnext",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_convnext_tiny_224_local",),
        "huggingface",
        "ConvNeXt-T, ImageNet-1k",
    ),
    (
        "clip_vit_base_patch32",
        "openai/clip-vit-base-patch32",
        "clip",
        224,
        None,
        "mit",
        "zero-shot",
        ("zero_shot_classifier_clip_vit_base_patch32",),
        "huggingface",
        "CLIP ViT-B/32: zero-shot classification with labels you choose",
    ),
    (
        "mobilenet_v2_1.0_224",
        "google/mobilenet_v2_1.0_224",
        "mobilenet_v2",
        224,
        1001,
        "other",
        "classification",
        ("image_classifier_mobilenet_v2_1.0_224", "mobilenet_v2"),
        "huggingface",
        "MobileNetV2 1.0, ImageNet-1k (+ background class)",
    ),
    (
        "resnet50",
        "microsoft/resnet-50",
        "resnet",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_resnet50", "resnet-50"),
        "huggingface",
        "ResNet-50 v1.5, ImageNet-1k",
    ),
    (
        "resnet18",
        "microsoft/resnet-18",
        "resnet",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_resnet18", "resnet-18"),
        "huggingface",
        "ResNet-18, ImageNet-1k",
    ),
    (
        "efficientnet_b7",
        "google/efficientnet-b7",
        "efficientnet",
        600,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_efficientnet_b7", "efficientnet-b7"),
        "huggingface",
        "EfficientNet-B7, ImageNet-1k (600 px; heavy)",
    ),
    (
        "densenet121",
        "timm/densenet121.tv_in1k",
        "densenet",
        224,
        1000,
        "apache-2.0",
        "classification",
        ("image_classifier_densenet121",),
        "timm",
        "DenseNet-121 (torchvision weights via timm), ImageNet-1k; needs timm to build",
    ),
)

for _name, _repo, _family, _size, _classes, _license, _task, _aliases, _importer, _description in _SEED:
    register_hub_model(
        _name,
        _repo,
        family=_family,
        description=_description,
        input_size=_size,
        num_classes=_classes,
        license=_license,
        task=_task,
        aliases=_aliases,
        importer=_importer,
    )
