"""Catalogue names backed by Hugging Face repos: download through huggingface_hub from a local HTTP server
(``HF_ENDPOINT``), then import into the cache; offline, fail fast with a message that says what to do.
No test here touches the internet."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

from click.testing import CliRunner  # noqa: E402
from import_helpers import label_map, save_checkpoint  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.cli import cli  # noqa: E402
from sparkvision.errors import ModelNotFoundError  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.importers.hub import register_hub_model  # noqa: E402
from sparkvision.models import catalogue  # noqa: E402
from sparkvision.models.catalogue import get_entry, list_models, resolve_model  # noqa: E402
from sparkvision.models.store import models_root  # noqa: E402

REPO = "sparkvision-test/tiny-vit"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PRE_VIT = {"image_processor_type": "ViTImageProcessor", "do_normalize": True, "do_resize": True,
           "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2, "size": {"height": 32, "width": 32}}  # fmt: skip


class _Hub(BaseHTTPRequestHandler):
    """Serves ``/<org>/<repo>/resolve/<revision>/<file>`` from a folder, like the Hub's file endpoint."""

    root: Path
    log: list[str]

    def _serve(self, body: bool) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        self.log.append(f"{self.command} {self.path}")
        if len(parts) < 5 or parts[2] != "resolve":
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            return
        file = self.root / parts[0] / parts[1] / "/".join(parts[4:])
        if not file.is_file():
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path / "hub"
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=20,
            image_size=32,
            patch_size=16,
            **label_map(3),
        )
    )
    save_checkpoint(model, PRE_VIT, root / REPO, logit_std=0)
    (root / REPO / "README.md").write_text("---\nlicense: apache-2.0\ntags: [vision]\n---\n# tiny\n")
    log: list[str] = []
    handler = type("Hub", (_Hub,), {"root": root, "log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SPARKVISION_OFFLINE", raising=False)
    try:
        yield url, log
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def test_entry(monkeypatch: pytest.MonkeyPatch) -> str:
    """A catalogue entry for the served repo, removed again after the test."""
    monkeypatch.setattr(catalogue, "_CATALOGUE", dict(catalogue._CATALOGUE))
    monkeypatch.setattr(catalogue, "_ALIASES", dict(catalogue._ALIASES))
    register_hub_model(
        "tiny_vit_test", REPO, family="vit", description="test", input_size=32, num_classes=3,
        license="apache-2.0", aliases=("image_classifier_tiny_vit_test",),
    )  # fmt: skip
    return "image_classifier_tiny_vit_test"


def test_pretrained_downloads_imports_then_uses_the_cache(
    tmp_home: Path, hub: tuple[str, list[str]], test_entry: str
) -> None:
    _, log = hub
    classifier = Classifier.pretrained(test_entry)
    assert classifier.model_dir == models_root() / "tiny_vit_test"
    spec = classifier.spec
    assert spec.source == f"hf:{REPO}" and spec.license == "apache-2.0" and spec.family == "vit"
    assert spec.labels == ("class 0", "class 1", "class 2")
    fetched = {line.split("/")[-1] for line in log if line.startswith("GET")}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= fetched
    photo = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"
    assert next(classifier.classify(str(photo), top_k=3)).error is None

    requests = len(log)
    again, _ = resolve_model(test_entry)
    assert again == classifier.model_dir and len(log) == requests  # served from the cache, no network

    rows = {row.name: row for row in list_models()}
    row = rows["tiny_vit_test"]
    assert (row.family, row.input_size, row.num_classes, row.license, row.cached) == (
        "vit",
        32,
        3,
        "apache-2.0",
        True,
    )
    assert row.source == f"hf:{REPO}"


def test_offline_fails_fast_naming_the_repo_and_the_import_command(
    tmp_home: Path, test_entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        Classifier.pretrained(test_entry)
    assert time.perf_counter() - started < 2
    message = str(info.value)
    assert REPO in message and "offline" in message
    assert f"sparkvision import hf:{REPO} --name tiny_vit_test" in message
    assert "sparkvision import ./tiny-vit --name tiny_vit_test" in message
    assert not models_root().exists() or not any(models_root().iterdir())

    result = CliRunner().invoke(cli, ["classify", str(Path(__file__)), "--model", test_entry])
    assert result.exit_code == 2 and f"sparkvision import hf:{REPO}" in result.output


def test_unreachable_hub_fails_fast(
    tmp_home: Path, test_entry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match=f"no network.*sparkvision import hf:{REPO}"):
        resolve_model(test_entry)
    assert time.perf_counter() - started < 10
    assert not models_root().exists() or not any(models_root().iterdir())


def test_import_hf_repo_id(tmp_home: Path, hub: tuple[str, list[str]]) -> None:
    path = import_model(f"hf:{REPO}")
    assert path == models_root() / "tiny-vit"
    assert json.loads((path / "sparkvision.json").read_text())["source"] == f"hf:{REPO}"


def test_seed_names_map_to_their_hugging_face_repos() -> None:
    seeds = {
        "image_classifier_vit_base_patch16_224": ("vit_base_patch16_224", "google/vit-base-patch16-224", "vit"),
        "image_classifier_swin_base_patch4_window7_224": (
            "swin_base_patch4_window7_224", "microsoft/swin-base-patch4-window7-224", "swin"),
        "image_classifier_convnext_tiny_224_local": ("convnext_tiny_224", "facebook/convnext-tiny-224", "convnext"),
        "zero_shot_classifier_clip_vit_base_patch32": (
            "clip_vit_base_patch32", "openai/clip-vit-base-patch32", "clip"),
    }  # fmt: skip
    for alias, (name, repo, family) in seeds.items():
        entry = get_entry(alias)
        assert entry is not None and entry.name == name and get_entry(name) is entry
        assert entry.source == f"hf:{repo}" and entry.family == family and entry.license
        assert entry.build is not None and repo in entry.how_to_get
    assert get_entry("clip_vit_base_patch32").task == "zero-shot"


def test_models_list_shows_family_size_labels_source_licence_and_cache(tmp_home: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    vit = rows["vit_base_patch16_224"]
    assert (vit["family"], vit["input_size"], vit["num_classes"]) == ("vit", 224, 1000)
    assert (vit["source"], vit["license"], vit["cached"]) == (
        "hf:google/vit-base-patch16-224",
        "apache-2.0",
        False,
    )
    assert rows["clip_vit_base_patch32"]["task"] == "zero-shot"
