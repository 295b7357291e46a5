"""Write ``src/sparkvision/data/imagenet1k_labels.tsv`` from timm's ImageNet metadata files.

The table has one line per ImageNet-1k class in the standard index order (sorted WordNet ids, so
0 = n01440764 "tench, Tinca tinca"): ``<index>\\t<synset>\\t<full label>``. The full label is the WordNet
lemma list, as Hugging Face's and Spark NLP's ImageNet models print it.

timm keeps ``imagenet_synsets.txt`` and ``imagenet_synset_to_lemma.txt`` under ``timm/data/_info``. They are
read as plain files: from an installed timm (located without importing it, so torchvision is not needed) or
from a timm wheel given with ``--wheel``::

    python scripts/make_imagenet_labels.py                   # uses the installed timm
    python scripts/make_imagenet_labels.py --wheel timm-1.0.whl
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import zipfile
from pathlib import Path

SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "sparkvision" / "data" / "imagenet1k_labels.tsv"


def read_timm_files(wheel: Path | None = None) -> tuple[str, str]:
    """Return the text of timm's synset list and synset→lemma table."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(SYNSETS).decode(), archive.read(LEMMAS).decode()
    spec = importlib.util.find_spec("timm")
    if (
        spec is None or spec.origin is None or not spec.submodule_search_locations
    ):  # origin None: a namespace dir
        raise SystemExit("timm is not installed: pip install timm, or pass --wheel PATH_TO_TIMM_WHEEL")
    root = Path(spec.origin).parent.parent
    return (root / SYNSETS).read_text(), (root / LEMMAS).read_text()


def build_table(synsets_text: str, lemmas_text: str) -> list[tuple[int, str, str]]:
    """Join the ordered synset list with its lemmas; fail loudly on anything unexpected."""
    synsets = [line.strip() for line in synsets_text.splitlines() if line.strip()]
    if len(synsets) != 1000 or synsets != sorted(synsets):
        raise ValueError(f"expected 1000 sorted ImageNet-1k synsets, got {len(synsets)}")
    lemmas: dict[str, str] = {}
    for line in lemmas_text.splitlines():
        if line.strip():
            synset, _, lemma = line.partition("\t")
            lemmas[synset.strip()] = lemma.strip()
    missing = [s for s in synsets if not lemmas.get(s)]
    if missing:
        raise ValueError(f"no lemma for synsets {missing[:5]}")
    return [(i, s, lemmas[s]) for i, s in enumerate(synsets)]


def render(table: list[tuple[int, str, str]]) -> str:
    return "".join(f"{i}\t{synset}\t{label}\n" for i, synset, label in table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="read timm's files from this wheel instead")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(build_table(*read_timm_files(args.wheel)))
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({text.count(chr(10))} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
