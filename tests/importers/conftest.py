"""Fixtures of the import tests; helpers live in import_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private sparkvision cache for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("SPARKVISION_HOME", str(home))
    return home
