"""``sparkvision serve``: options, binding, printed URL, API key from the environment, lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sparkvision.cli import cli


@pytest.fixture
def captured(monkeypatch):
    """Replace uvicorn's serving loop: record the app, the config and the listening sockets."""
    import uvicorn

    seen: dict = {}

    def fake_run(self, sockets=None):
        seen["app"] = self.config.app
        seen["config"] = self.config
        seen["sockets"] = sockets
        seen["address"] = sockets[0].getsockname()
        for sock in sockets:
            sock.close()

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    return seen


def test_the_cli_loads_without_fastapi():
    code = (
        "import sys; from sparkvision.cli import cli; "
        "assert 'serve' in cli.commands; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_binds_loopback_by_default_and_prints_the_url(captured, colour_model):
    result = CliRunner().invoke(cli, ["serve", "--model", str(colour_model), "--port", "0"])
    assert result.exit_code == 0, result.output
    host, port = captured["address"]
    assert host == "127.0.0.1" and port > 0
    assert f"http://127.0.0.1:{port}/" in result.stdout
    assert "warning" not in result.output
    settings = captured["app"].state.settings
    assert settings.api_key is None and settings.max_upload_bytes == 20 * 1024 * 1024


def test_serve_options_reach_the_app(captured, colour_model, monkeypatch):
    monkeypatch.setenv("SPARKVISION_API_KEY", "from-env")
    args = ["serve", "-m", str(colour_model), "--port", "0", "--max-upload-mb", "2", "--max-images", "3"]
    args += ["--max-batch", "4", "--max-wait-ms", "1.5", "--top-k", "2", "--max-pixels", "1000"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    settings = captured["app"].state.settings
    assert settings.api_key == "from-env"
    assert (settings.max_upload_bytes, settings.max_images, settings.max_batch) == (2 * 2**20, 3, 4)
    assert (settings.max_wait_ms, settings.default_top_k, settings.max_pixels) == (1.5, 2, 1000)


def test_serve_warns_when_exposed_without_a_key(captured, colour_model):
    result = CliRunner().invoke(cli, ["serve", "-m", str(colour_model), "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "without an API key" in result.stderr
    assert captured["address"][0] == "0.0.0.0"


def test_serve_reports_a_busy_port(colour_model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "-m", str(colour_model), "--port", str(port)])
    assert result.exit_code != 0 and f"cannot listen on 127.0.0.1:{port}" in result.output


def test_serve_refuses_an_unknown_model_directory(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "-m", str(tmp_path), "--port", "0"])
    assert result.exit_code != 0 and "sparkvision.json" in result.output


def test_serve_refuses_an_unknown_model_name():
    result = CliRunner().invoke(cli, ["serve", "-m", "no_such_model", "--port", "0"])
    assert result.exit_code == 2 and "unknown model 'no_such_model'" in result.output


def test_serve_limits_options_reach_the_app(captured, colour_model):
    args = ["serve", "-m", str(colour_model), "--port", "0", "--max-inflight-mb", "100"]
    args += ["--max-inflight-pixels", "80000000", "--max-request-pixels", "60000000", "--max-waiting", "9"]
    args += ["--max-wait-s", "3", "--header-timeout", "4", "--body-timeout", "5", "--shutdown-timeout", "6"]
    args += ["--max-models", "2", "--no-build", "--cors-origin", "https://app.example.com"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    settings = captured["app"].state.settings
    assert (settings.max_inflight_bytes, settings.max_inflight_pixels) == (100 * 2**20, 80_000_000)
    assert (settings.max_request_pixels, settings.max_waiting, settings.max_wait_s) == (60_000_000, 9, 3)
    assert (settings.header_timeout_s, settings.body_timeout_s) == (4, 5)
    assert settings.max_models == 2 and settings.build_models is False
    assert settings.cors_origins == ("https://app.example.com",)
    assert captured["config"].timeout_graceful_shutdown == 6
    assert captured["config"].http.__name__ == "HeaderDeadlineProtocol"


def test_serve_answers_only_loopback_host_names_by_default(captured, colour_model):
    from sparkvision.serve.settings import LOOPBACK_HOSTS

    result = CliRunner().invoke(cli, ["serve", "-m", str(colour_model), "--port", "0"])
    assert result.exit_code == 0, result.output
    assert captured["app"].state.settings.allowed_hosts == LOOPBACK_HOSTS
    exposed = ["serve", "-m", str(colour_model), "--port", "0", "--host", "0.0.0.0", "--api-key", "k"]
    assert CliRunner().invoke(cli, exposed).exit_code == 0
    assert captured["app"].state.settings.allowed_hosts is None
    named = ["serve", "-m", str(colour_model), "--port", "0", "--allowed-host", "vision.example.com"]
    assert CliRunner().invoke(cli, named).exit_code == 0
    assert captured["app"].state.settings.allowed_hosts == ("vision.example.com",)
