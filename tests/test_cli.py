"""The command line, through click's runner (and once as a real subprocess)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sparkvision.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def mixed_folder(tmp_path: Path, examples_dir: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        (folder / name).write_bytes((examples_dir / name).read_bytes())
    (folder / "broken.jpg").write_bytes((examples_dir / "rocket.jpg").read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    sub = folder / "more"
    sub.mkdir()
    (sub / "camera.png").write_bytes((examples_dir / "camera.png").read_bytes())
    return folder


def test_table_on_the_examples(runner: CliRunner, examples_dir: Path, lite0) -> None:
    result = runner.invoke(cli, ["classify", str(examples_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["image", "label", "confidence"]
    coffee = next(line for line in lines if "coffee.jpg" in line)
    assert "espresso" in coffee and coffee.rstrip().endswith("%")
    assert "5 images: 5 classified, 0 failed" in result.stderr


def test_jsonl_records_recursive_with_an_error_row(runner: CliRunner, mixed_folder: Path, lite0) -> None:
    result = runner.invoke(cli, ["classify", str(mixed_folder), "-r", "--format", "jsonl", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    names = [Path(r["path"]).name for r in records]
    assert names == ["broken.jpg", "chelsea.jpg", "coffee.jpg", "camera.png"]
    broken, chelsea, coffee, _ = records
    assert broken["labels"] == [] and broken["error"]
    assert coffee["labels"][0] == "espresso" and coffee["class_ids"][0] == 967 and coffee["error"] is None
    assert len(chelsea["scores"]) == 3
    assert "4 images: 3 classified, 1 failed" in result.stderr


def test_not_recursive_by_default(runner: CliRunner, mixed_folder: Path, lite0) -> None:
    result = runner.invoke(cli, ["classify", str(mixed_folder), "-f", "jsonl"])
    assert [Path(json.loads(line)["path"]).name for line in result.stdout.splitlines()] == [
        "broken.jpg",
        "chelsea.jpg",
        "coffee.jpg",
    ]


def test_csv_json_and_parquet_files(runner: CliRunner, mixed_folder: Path, tmp_path: Path, lite0) -> None:
    out_csv, out_json, out_parquet = tmp_path / "p.csv", tmp_path / "p.json", tmp_path / "p.parquet"
    for fmt, out in (("csv", out_csv), ("json", out_json), ("parquet", out_parquet)):
        result = runner.invoke(cli, ["classify", str(mixed_folder), "-f", fmt, "-o", str(out), "-k", "2"])
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [Path(r["path"]).name for r in rows] == ["broken.jpg", "chelsea.jpg", "coffee.jpg"]
    assert rows[2]["label_1"] == "espresso" and rows[2]["class_id_1"] == "967" and rows[0]["error"]
    assert json.loads(out_json.read_text())[2]["labels"][0] == "espresso"
    table = pq.read_table(out_parquet).to_pylist()
    assert table[2]["labels"][0] == "espresso" and table[0]["error"] and table[0]["labels"] == []


def test_strict_fails_on_bad_images(runner: CliRunner, mixed_folder: Path, lite0) -> None:
    result = runner.invoke(cli, ["classify", str(mixed_folder), "--strict", "-q"])
    assert result.exit_code == 1
    assert "ERROR" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "{examples}", "--model", "efficientnet_lite9"], "Did you mean"),
        (["classify", "{examples}", "--top-k", "0"], "top_k must be between 1 and 1000"),
        (["classify", "{examples}", "--top-k", "1001"], "top_k must be between 1 and 1000"),
        (["classify", "{empty}"], "no image files"),
        (["classify", "{examples}", "-f", "parquet"], "parquet output needs a file"),
        (["classify", "{examples}", "--batch-size", "0"], "--batch-size': must be at least 1, got 0"),
        (["models", "info", "nope"], "unknown model 'nope'"),
    ],
)
def test_usage_errors_are_one_clean_line(runner, examples_dir, tmp_path, args, message, lite0) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(examples=examples_dir, empty=tmp_path / "empty") for a in args]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output


def test_models_list_and_info(runner: CliRunner, lite0) -> None:
    listing = runner.invoke(cli, ["models", "list"])
    assert listing.exit_code == 0
    line = next(x for x in listing.stdout.splitlines() if x.startswith("efficientnet_lite0 "))
    assert "Apache-2.0" in line and "224" in line and "yes" in line
    rows = json.loads(runner.invoke(cli, ["models", "list", "--json"]).stdout)
    assert {"efficientnet_lite1", "efficientnet_lite2"} <= {r["name"] for r in rows}
    info = json.loads(runner.invoke(cli, ["models", "info", "efficientnet_lite0", "--json"]).stdout)
    assert info["preprocess"]["crop_pct"] == 0.875 and info["num_classes"] == 1000
    assert info["labels"][967] == "espresso"
    text = runner.invoke(cli, ["models", "info", "efficientnet_lite0"]).stdout
    assert "bicubic" in text and "sha256" in text


def test_real_subprocess_pipes_clean_output(examples_dir: Path, lite0) -> None:
    """Piped stdout holds only data; the summary (and any progress bar) goes to stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "sparkvision.cli", "classify", str(examples_dir / "coffee.jpg"), "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["labels"][0] == "espresso"
    assert proc.stderr.startswith("1 image: 1 classified, 0 failed")


def test_json_default_top_k_fits_a_small_model(
    runner: CliRunner, colour_model: Path, examples_dir: Path
) -> None:
    result = runner.invoke(
        cli, ["classify", str(examples_dir / "coffee.jpg"), "-m", str(colour_model), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)[0]["labels"]) == 3


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_shared_options_mean_the_same_in_every_command() -> None:
    """-f, -o, -t, -k, -m, -b: one long name, and one meaning (the same help), wherever they appear."""
    canonical = {"-f": "--format", "-o": "--output", "-t": "--threads", "-k": "--top-k", "-m": "--model"}
    canonical["-b"] = "--batch-size"
    helps: dict[str, set[str]] = {"--threads": set(), "--batch-size": set()}
    users: dict[str, list[str]] = {short: [] for short in canonical}
    for name, command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for short, long in canonical.items():
                if short in param.opts:
                    assert param.opts == [short, long], f"{name}: {param.opts}"
                    users[short].append(name)
            if param.opts[-1] in helps:
                helps[param.opts[-1]].add(param.help or "")
            if "--force" in param.opts:
                assert param.opts == ["--force"], f"{name}: {param.opts}"
    assert all(len(texts) == 1 for texts in helps.values()), helps
    assert {"classify", "embed", "import", "evaluate", "train", "models list"} <= set(users["-f"])
    assert {"classify", "embed", "serve", "evaluate", "train"} <= set(users["-t"])


def test_import_and_models_take_format_json(runner: CliRunner, lite0) -> None:
    as_format = runner.invoke(cli, ["models", "info", "efficientnet_lite0", "-f", "json"])
    as_flag = runner.invoke(cli, ["models", "info", "efficientnet_lite0", "--json"])
    assert as_format.exit_code == 0 and json.loads(as_format.stdout) == json.loads(as_flag.stdout)
