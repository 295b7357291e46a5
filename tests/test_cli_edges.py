"""The CLI at its edges: file names no format may lose, a real terminal, and mistakes reported in one line."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sparkvision.cli import cli
from sparkvision.cli.progress import ProgressBar, Tally, summary_line
from sparkvision.names import display_text, escape_text, unescape_text

#: Names (bytes, as on disk) that broke outputs: not UTF-8, line breaks, control characters, CSV
#: specials, a literal text that looks like our escape, and two ordinary ones.
ODD_NAMES = [
    b"caf\xe9.png",
    b"line\nbreak.png",
    b"carriage\rreturn.png",
    b"tab\tand\x1besc.png",
    b'quote",comma.png',
    b"literal\\udce9.png",
    "日本語.png".encode(),
    b"plain.png",
]
BROKEN = b"broken\xff.png"  # a non-UTF-8 name on a file that is not an image: an error row


@pytest.fixture
def odd_folder(tmp_path: Path) -> bytes:
    folder = os.fsencode(tmp_path / "odd")
    os.mkdir(folder)
    for i, name in enumerate(ODD_NAMES):
        Image.new("RGB", (12, 10), (200, 20 * i, 30)).save(os.path.join(folder, name), format="PNG")
    with open(os.path.join(folder, BROKEN), "wb") as handle:
        handle.write(b"not an image at all")
    return folder


def _expected(folder: bytes) -> set[bytes]:
    return {os.path.join(folder, name) for name in [*ODD_NAMES, BROKEN]}


def _run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    # Whatever the names, what reaches stdout is valid UTF-8 (strict decoding raises otherwise).
    return result.exit_code, result.stdout_bytes.decode("utf-8"), result.stderr


def test_odd_file_names_survive_json_and_jsonl(odd_folder: bytes, colour_model: Path) -> None:
    folder = os.fsdecode(odd_folder)
    for fmt in ("json", "jsonl"):
        code, out, err = _run(["classify", folder, "-m", str(colour_model), "-f", fmt, "-q"])
        assert code == 0, err
        records = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
        assert {os.fsencode(r["path"]) for r in records} == _expected(odd_folder)
        assert len(records) == len(ODD_NAMES) + 1
        assert sum(r["error"] is not None for r in records) == 1
        assert "\\udce9" in out and "\\udcff" in out  # the documented escape for a byte that is not UTF-8


def test_odd_file_names_survive_csv_and_parquet_files(
    odd_folder: bytes, colour_model: Path, tmp_path
) -> None:
    folder = os.fsdecode(odd_folder)
    out_csv, out_parquet = tmp_path / "p.csv", tmp_path / "p.parquet"
    for fmt, out in (("csv", out_csv), ("parquet", out_parquet)):
        code, _, err = _run(["classify", folder, "-m", str(colour_model), "-f", fmt, "-o", str(out)])
        assert code == 0, err
        assert err.startswith(f"{len(ODD_NAMES) + 1} images: {len(ODD_NAMES)} classified, 1 failed")
    text = out_csv.read_bytes().decode("utf-8")  # strict: valid UTF-8
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {os.fsencode(unescape_text(r["path"])) for r in rows} == _expected(odd_folder)
    assert len(rows) == len(ODD_NAMES) + 1
    # Python's reader is lenient; a strict reader splits a row at a bare CR unless it is quoted.
    assert "\rreturn.png" in text and '"' + os.fsdecode(odd_folder) + "/carriage\rreturn.png" + '"' in text
    table = pq.read_table(out_parquet).to_pylist()
    assert {os.fsencode(unescape_text(r["path"])) for r in table} == _expected(odd_folder)
    assert sum(r["error"] is not None for r in table) == 1


def test_odd_file_names_take_one_escaped_line_each_in_the_table(
    odd_folder: bytes, colour_model: Path
) -> None:
    folder = os.fsdecode(odd_folder)
    code, out, err = _run(["classify", folder, "-m", str(colour_model), "-q"])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 + len(ODD_NAMES) + 1  # header, rule, one line per image
    assert not any(ch in out for ch in "\r\t\x1b")
    body = "\n".join(lines[2:])
    for shown in ("caf\\xe9.png", "line\\nbreak.png", "carriage\\rreturn.png", "tab\\tand\\x1besc.png"):
        assert shown in body
    assert "broken\\xff.png" in body and "ERROR" in body


def test_embed_keeps_odd_names_in_every_format(odd_folder: bytes, tmp_path: Path) -> None:
    from tiny_models import write_tiny_model

    model = write_tiny_model(tmp_path / "emb")
    folder = os.fsdecode(odd_folder)
    code, out, err = _run(["embed", folder, "-m", str(model), "-q"])
    assert code == 0, err
    assert {os.fsencode(json.loads(line)["path"]) for line in out.splitlines()} == _expected(odd_folder)
    npz, parquet = tmp_path / "e.npz", tmp_path / "e.parquet"
    assert _run(["embed", folder, "-m", str(model), "-f", "npz", "-o", str(npz)])[0] == 0
    with np.load(npz) as data:
        assert {os.fsencode(str(p)) for p in data["paths"]} == _expected(odd_folder)
    assert _run(["embed", folder, "-m", str(model), "-f", "parquet", "-o", str(parquet)])[0] == 0
    paths = [os.fsencode(unescape_text(row["path"])) for row in pq.read_table(parquet).to_pylist()]
    assert set(paths) == _expected(odd_folder)


@given(st.text(alphabet=st.sampled_from(["\\", "u", "0", "5", "c", "a", "F", "\udce9", "\udc80", "é", "\n"])))
def test_escaped_text_is_utf8_and_reads_back_exactly(text: str) -> None:
    escaped = escape_text(text)
    escaped.encode("utf-8")
    assert unescape_text(escaped) == text
    assert "\n" not in display_text(text) and "\udce9" not in display_text(text)


# -- the terminal ------------------------------------------------------------------------------------


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: carriage returns overwrite, line feeds move down."""
    assert "\x1b" not in raw, "no escape sequences expected"
    lines, row, col = [[]], 0, 0
    for ch in raw:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append([])
        else:
            line = lines[row]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = ch
            col += 1
    return ["".join(line).rstrip() for line in lines]


def _run_in_pty(args: list[str], columns: int = 120) -> tuple[int, str]:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "sparkvision.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_table_and_progress_bar_never_share_a_line_in_a_terminal(tmp_path: Path, colour_model: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(24):
        Image.new("RGB", (16, 16), (10 * i, 0, 255 - 10 * i)).save(folder / f"img{i:02d}.png")
    (folder / "img00_broken.png").write_bytes(b"truncated")
    code, raw = _run_in_pty(["classify", str(folder), "-m", str(colour_model), "-b", "4", "-t", "1"])
    assert code == 0, raw
    # The bar was drawn with the total, the ETA and the failure count...
    assert "/25 images" in raw and "ETA" in raw and "1 failed" in raw
    # ...and the screen ends with the table and the summary only: no bar fragment on any line.
    lines = [line for line in _screen(raw.replace("\r\n", "\n")) if line]
    assert lines[0].split() == ["image", "label", "confidence"] and set(lines[1]) == {"-"}
    rows, summary = lines[2:-1], lines[-1]
    assert len(rows) == 25
    assert all(re.match(r"\S*img\d\d(_broken)?\.png +(red|green|blue|ERROR: )", line) for line in rows), rows
    assert not any("img/s" in line or "ETA" in line for line in rows)
    assert summary.startswith("25 images: 24 classified, 1 failed in ")


def test_progress_bar_shows_total_eta_and_failures() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = ProgressBar(out, total=10, desc="m", clock=lambda: now[0], width=100, interval=0)
    now[0] = 2.0
    bar.advance(4, failed=1)
    line = bar.text()
    assert "4/10 images" in line and "40%" in line and "2.0 img/s" in line and "ETA 0:03" in line
    assert "1 failed" in line and len(line) < 100
    one = ProgressBar(io.StringIO(), total=1, desc="m", clock=lambda: now[0], width=100)
    assert "0/1 image " in one.text() and "ETA ?" in one.text()
    open_ended = ProgressBar(io.StringIO(), total=None, desc="m", clock=lambda: now[0], width=100)
    open_ended.advance(1)
    assert "1 image " in open_ended.text() and "ETA" not in open_ended.text()
    bar.close()
    assert _screen(out.getvalue()) == [""]  # closing leaves an empty line for the summary


def test_summaries_count_right() -> None:
    assert summary_line(Tally(1, 0, 0.5), verb="classified", model="m").startswith(
        "1 image: 1 classified, 0 failed in 0.5 s (2.0 img/s"
    )
    assert summary_line(Tally(0, 0, 0.3), verb="classified", model="m") == "no images classified (model m)"
    assert "img/s" not in summary_line(Tally(2, 2, 0.001), verb="embedded", model="m")


# -- mistakes: one line, exit status 2 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["classify", "{photo}", "--bogus"],
            "error: no such option '--bogus' (see 'sparkvision classify --help')",
        ),
        (["classify"], "error: missing argument 'PATHS...'"),
        (["classify", "{photo}", "-k", "many"], "error: invalid value for '-k' / '--top-k': 'many'"),
        (["classify", "{photo}", "-f", "xml"], "error: invalid value for '-f' / '--format'"),
        (["frobnicate"], "error: no such command 'frobnicate'"),
        (
            ["classify", "{photo}", "-f", "csv", "-o", "{tmp}/no/such/dir/p.csv"],
            "/no/such/dir' does not exist",
        ),
        (["classify", "{photo}", "-f", "parquet", "-o", "{tmp}/no/p.parquet"], "/no' does not exist"),
        (["classify", "{photo}", "-f", "csv", "-o", "{tmp}"], "is a folder; name a file inside it"),
        (["classify", "{photo}", "-f", "csv", "-o", "{photo}/p.csv"], "is not a folder"),
        (["embed", "{photo}", "-f", "npz", "-o", "{tmp}/no/e.npz"], "/no' does not exist"),
        (["import", "model.onnx", "-o", "{photo}/model"], "coffee.jpg' is not a folder"),
        (["evaluate", "{tmp}", "--report", "{photo}/sub/report"], "coffee.jpg' is not a folder"),
        (
            ["classify", "{photo}", "--threads", "0"],
            "error: invalid value for '-t' / '--threads': must be at least 1",
        ),
    ],
)
def test_every_mistake_is_one_error_line(
    args: list[str], message: str, tmp_path: Path, examples_dir: Path
) -> None:
    photo = examples_dir / "coffee.jpg"
    result = CliRunner().invoke(cli, [a.format(photo=photo, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_output_folder_is_one_error_line(tmp_path: Path, examples_dir: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = CliRunner().invoke(
        cli, ["classify", str(examples_dir / "coffee.jpg"), "-f", "csv", "-o", str(locked / "p.csv")]
    )
    assert (
        result.exit_code == 2 and result.stderr.startswith("error: ") and "permission denied" in result.stderr
    )


def test_a_missing_file_gets_an_error_row_and_the_run_goes_on(tmp_path: Path, colour_model: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (9, 9), (250, 0, 0)).save(good)
    args = ["classify", str(tmp_path / "gone.jpg"), str(good), "-m", str(colour_model), "-f", "jsonl"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    gone, found = (json.loads(line) for line in result.stdout.splitlines())
    assert gone["path"].endswith("gone.jpg") and "not found" in gone["error"] and gone["labels"] == []
    assert found["labels"][0] == "red" and found["error"] is None
    assert result.stderr.startswith("2 images: 1 classified, 1 failed")
    strict = CliRunner().invoke(cli, [*args, "--strict"])
    assert strict.exit_code == 1 and len(strict.stdout.splitlines()) == 2
