"""Fixtures for the web-service tests (helpers live in serve_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from serve_helpers import jpeg_bytes, png_bytes, wait_ready


@pytest.fixture(scope="session")
def red_png() -> bytes:
    return png_bytes((230, 20, 20))


@pytest.fixture(scope="session")
def blue_jpeg() -> bytes:
    return jpeg_bytes((20, 30, 220))


@pytest.fixture
def serve_client(colour_model: Path):
    """Factory: a started TestClient over the tiny colour model, with the given settings."""
    from contextlib import ExitStack

    from fastapi.testclient import TestClient

    from sparkvision.serve import ServeSettings, create_app

    stack = ExitStack()

    def make(model: str | None = None, loader=None, **settings):
        app = create_app(model or str(colour_model), settings=ServeSettings(**settings), loader=loader)
        client = stack.enter_context(TestClient(app))
        wait_ready(client)
        return client

    with stack:
        yield make
