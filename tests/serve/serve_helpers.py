"""Helpers for the web-service tests: in-memory test images and a server-readiness wait (the tiny
colour model is in tests/tiny_models.py)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from tiny_models import COLOURS, write_colour_model  # noqa: F401  (re-exported for the serve tests)

#: The browser tests drive Debian's ``chromium`` package with Playwright (no browser download).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def wait_ready(client, timeout: float = 60.0) -> None:
    """Poll /readyz until the default model is loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        assert response.json()["state"] == "loading", response.json()
        time.sleep(0.02)
    raise AssertionError("the model did not load in time")


@contextmanager
def served(arguments: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``sparkvision serve ARGUMENTS --port 0`` in a subprocess; yields its URL once ``/readyz`` is 200.

    The server's log goes to a file, not a pipe: a chatty server must never block on it.
    """
    import httpx

    command = [sys.executable, "-c", "from sparkvision.cli import main; main()", "serve", *arguments]
    command += ["--port", "0", "--log-level", "warning"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, text=True, env=env)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"no URL printed: {line!r}; server log: {log.read_text()}"
        url = match.group(0)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"the server did not become ready; server log: {log.read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
