"""The timm tests run in their own environment (scripts/ci_timm_tests.sh: torch 2.14.1 + torchvision
0.29.1 + timm), because timm needs a torchvision that imports beside torch; elsewhere they are skipped."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timm: needs timm + torchvision (run by scripts/ci_timm_tests.sh)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/timm_models/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.timm)
