"""``evaluate``: class mapping, metrics checked against a hand count, reports, the CLI command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sparkvision import Classifier, ConfigError, ModelSpec, PreprocessSpec
from sparkvision.cli import cli
from sparkvision.labels import imagenet1k_labels, imagenet1k_synsets
from sparkvision.training import evaluate, map_classes, write_report

IMAGENET = ModelSpec(
    name="imagenet_labels_only",
    family="test",
    preprocess=PreprocessSpec(),
    labels=imagenet1k_labels(),
    synsets=imagenet1k_synsets(),
)


def _mapping(folders: list[str], spec: ModelSpec = IMAGENET) -> dict[str, tuple[int | None, str | None]]:
    return {m.folder: (m.class_id, m.rule) for m in map_classes(folders, spec)}


def test_folder_names_map_by_synset_label_first_name_or_any_name() -> None:
    got = _mapping(
        [
            "n02123045",  # synset id
            "N01440764",  # synset ids ignore case
            "tiger cat",  # exact label
            "Egyptian_cat",  # label, ignoring case and underscores
            "espresso",  # exact label (a one-name label)
            "goldfish",  # first name of 'goldfish, Carassius auratus'
            "hippo",  # another name of 'hippopotamus, hippo, river horse, Hippopotamus amphibius'
        ]
    )
    assert got["n02123045"] == (281, "synset")
    assert got["N01440764"] == (0, "synset")
    assert got["tiger cat"] == (282, "label")
    assert got["Egyptian_cat"] == (285, "label (normalised)")
    assert got["espresso"] == (967, "label")
    assert got["goldfish"] == (1, "first name")
    assert got["hippo"] == (344, "any name")


def test_ambiguous_and_unknown_folders_say_why() -> None:
    crane, maillot, nonsense, typo = map_classes(["crane", "maillot", "zzz_nothing", "expresso"], IMAGENET)
    assert crane.class_id is None and "ambiguous" in crane.problem
    assert "n02012849" in crane.problem and "n03126707" in crane.problem and "synset id" in crane.problem
    # 'maillot' is a first name twice, but one label is exactly 'maillot': the exact rule wins.
    assert (maillot.class_id, maillot.rule) == (638, "label")
    assert nonsense.class_id is None and "no class" in nonsense.problem
    assert "'espresso'" in typo.problem  # a close name is suggested


def test_two_folders_for_one_class_are_refused() -> None:
    with pytest.raises(ConfigError, match="both map to class 281"):
        map_classes(["n02123045", "tabby"], IMAGENET)


def test_accuracy_equals_the_hand_count(lite0: Classifier, hand_counted: Path) -> None:
    # What EfficientNet-Lite0 predicts for the example photos (asserted here, so the count below is
    # a real hand count and not a copy of the code under test):
    top = {
        Path(p.path).name: p.labels
        for p in lite0.classify(sorted(hand_counted.glob("*/*.*")), top_k=5)
        if p.ok
    }
    assert top["coffee.jpg"][0] == "espresso"
    assert top["camera.png"][0] == "tripod"
    assert top["chelsea.jpg"][0] == "tiger cat" and "tabby, tabby cat" in top["chelsea.jpg"]
    assert top["rocket.jpg"][0] == "missile" and "space shuttle" in top["rocket.jpg"]

    result = evaluate(hand_counted, lite0)

    # Scored: espresso ✓, tripod ✓, tiger_cat ✓, n02123045 (tabby) ✗ → tiger cat, missile ✓,
    # space shuttle ✗ → missile. broken.jpg is unreadable: counted, listed, not scored.
    assert result.evaluated == 6 and result.images == 7
    assert result.top1_accuracy == pytest.approx(4 / 6)
    assert result.top5_accuracy == pytest.approx(6 / 6)  # tabby and space shuttle are in the top 5
    assert [Path(p).name for p, _ in result.failed] == ["broken.jpg"]
    per_class = {c.folder: (c.support, c.predicted, c.precision, c.recall) for c in result.classes}
    assert per_class == {
        "espresso": (1, 1, 1.0, 1.0),
        "missile": (1, 2, 0.5, 1.0),
        "n02123045": (1, 0, 0.0, 0.0),
        "space shuttle": (1, 0, 0.0, 0.0),
        "tiger_cat": (1, 2, 0.5, 1.0),
        "tripod": (1, 1, 1.0, 1.0),
    }
    tiger = next(c for c in result.classes if c.folder == "tiger_cat")
    assert tiger.f1 == pytest.approx(2 / 3)
    assert result.macro_precision == pytest.approx(3 / 6)
    assert result.macro_recall == pytest.approx(4 / 6)
    assert sorted(result.most_confused) == [("n02123045", "tiger cat", 1), ("space shuttle", "missile", 1)]
    assert {m.folder for m in result.unmapped} == {"crane", "not_an_imagenet_class"}
    assert result.empty_classes == ["empty_class"] and result.skipped_files == 1
    # Rows: the six mapped folders; columns: the same plus "(other)" — nothing was predicted outside.
    assert result.confusion.shape == (6, 7)
    assert result.confusion.sum() == 6 and np.trace(result.confusion[:, :6]) == 4
    assert result.images_per_second > 0


def test_report_files(lite0: Classifier, hand_counted: Path, tmp_path: Path) -> None:
    result = evaluate(hand_counted, lite0)
    written = write_report(result, tmp_path / "report")
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "66.7%" in markdown and "confusion_matrix.png" in markdown
    assert "crane" in markdown and "broken.jpg" in markdown
    with Image.open(written["confusion_matrix"]) as png:
        assert png.format == "PNG" and png.width > 300 and png.height > 300
    metrics = json.loads(written["metrics"].read_text(encoding="utf-8"))
    assert metrics["top1_accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion"]["counts"] == result.confusion.tolist()
    with open(written["predictions"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    assert sum(r["correct"] == "True" for r in rows) == 4
    assert [r["error"] != "" for r in rows].count(True) == 1


def test_cli_evaluate_json_and_report(lite0: Classifier, hand_counted: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(
        cli,
        ["evaluate", str(hand_counted), "--format", "json", "--report", str(tmp_path / "r"), "--no-progress"],
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["top1_accuracy"] == pytest.approx(4 / 6)
    assert payload["failed"] == 1
    assert {u["folder"] for u in payload["unmapped_classes"]} == {"crane", "not_an_imagenet_class"}
    assert Path(payload["report"]["confusion_matrix"]).is_file()

    text = runner.invoke(cli, ["evaluate", str(hand_counted), "--no-progress"])
    assert text.exit_code == 0
    assert "top-1 66.7%" in text.stdout and "space shuttle → missile" in text.stdout
    assert "ambiguous" in text.stderr

    strict = runner.invoke(cli, ["evaluate", str(hand_counted), "--strict", "--no-progress"])
    assert strict.exit_code == 1


def test_nothing_maps_is_an_error(lite0: Classifier, tmp_path: Path, examples_dir: Path) -> None:
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "a.jpg").write_bytes((examples_dir / "coffee.jpg").read_bytes())
    with pytest.raises(ConfigError, match="none of the class folders"):
        evaluate(tmp_path, lite0)
    out = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "missing")])
    assert out.exit_code == 2 and "no such folder" in out.stderr
