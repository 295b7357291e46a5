"""The builders of the catalogue's Hugging Face Hub models: download, then import.

The catalogue (``data/catalogue.json``) maps names — Spark NLP's, e.g.
``image_classifier_vit_base_patch16_224``, and our short ones, e.g. ``vit_base_patch16_224`` — to
Hugging Face repo ids with the builder ``huggingface`` or ``timm``; this module registers those two
builders with the catalogue. On first use :func:`download_checkpoint`
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
from pathlib import Path

from ..errors import ModelImportError, ModelNotFoundError
from ..models.catalogue import CatalogueEntry, register, register_builder
from ..models.spec import ModelSpec

__all__ = ["HF_PREFIX", "download_checkpoint", "register_hub_model"]

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
    "generation_config.json",
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


def _repo_id(entry: CatalogueEntry) -> str:
    return str(entry.builder_args.get("repo_id") or entry.source.removeprefix(HF_PREFIX))


def _build_huggingface(entry: CatalogueEntry, directory: Path) -> ModelSpec:
    from .huggingface import import_hf_checkpoint

    checkpoint = download_checkpoint(_repo_id(entry), name=entry.name)
    if entry.task == "captioning":
        from .vision_encoder_decoder import import_vision_encoder_decoder

        return import_vision_encoder_decoder(
            checkpoint,
            directory,
            name=entry.name,
            source=f"{HF_PREFIX}{_repo_id(entry)}",
            license=entry.license,
        )
    return import_hf_checkpoint(
        checkpoint, directory, name=entry.name, source=f"{HF_PREFIX}{_repo_id(entry)}", license=entry.license
    )


def _build_timm(entry: CatalogueEntry, directory: Path) -> ModelSpec:
    from .common import require
    from .timm_import import import_timm

    # fail before downloading anything
    require("timm", f"building {entry.name} (a timm model; timm needs torchvision as well)")
    checkpoint = download_checkpoint(_repo_id(entry), name=entry.name)
    return import_timm(
        None, checkpoint, directory, name=entry.name, source=f"{HF_PREFIX}{_repo_id(entry)}",
        license=entry.license,
    )  # fmt: skip


def _how_to_get(entry: CatalogueEntry) -> str:
    return offline_message(_repo_id(entry), entry.name, "it is built on first use")


register_builder("huggingface", _build_huggingface, _how_to_get)
register_builder("timm", _build_timm, _how_to_get)


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
            builder=importer,
            builder_args={"repo_id": repo_id},
        )
    )
