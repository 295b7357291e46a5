"""Helpers for the web-service tests: in-memory test images and a server-readiness wait (the tiny
colour model is in tests/tiny_models.py)."""

from __future__ import annotations

import io
import time
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
