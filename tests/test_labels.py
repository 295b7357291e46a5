"""The shipped ImageNet-1k label table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from sparkvision.labels import imagenet1k_labels, imagenet1k_synsets

ROOT = Path(__file__).resolve().parents[1]


def test_table_shape_and_well_known_classes() -> None:
    synsets, labels = imagenet1k_synsets(), imagenet1k_labels()
    assert len(synsets) == len(labels) == 1000
    assert list(synsets) == sorted(synsets) and len(set(synsets)) == 1000
    assert (synsets[0], labels[0]) == ("n01440764", "tench, Tinca tinca")
    assert labels[344] == "hippopotamus, hippo, river horse, Hippopotamus amphibius"
    assert labels[967] == "espresso"
    assert labels[999] == "toilet tissue, toilet paper, bathroom tissue"
    # the two names ImageNet repeats: match by index or synset, never by name
    assert labels.count("crane") == 2
    assert sum(label.split(",")[0] == "maillot" for label in labels) == 2


def _timm_installed() -> bool:
    spec = importlib.util.find_spec("timm")
    return spec is not None and spec.origin is not None  # not a stray namespace directory


@pytest.mark.skipif(not _timm_installed(), reason="timm is not installed here; checked in the timm venv")
def test_table_matches_timm_source() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_imagenet_labels as maker
    finally:
        sys.path.pop(0)
    expected = maker.render(maker.build_table(*maker.read_timm_files()))
    assert (ROOT / "src/sparkvision/data/imagenet1k_labels.tsv").read_text(encoding="utf-8") == expected
