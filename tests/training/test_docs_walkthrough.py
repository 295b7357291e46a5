"""The training guide (docs/training.md) and the README's training commands run as written.

The commands are read from the documents themselves, so the test fails when a document names a
folder, option or file that does not exist. They run in a fresh folder on the data the guide tells
users to build (``scripts/make_training_data.py``), and the outputs the guide shows are compared line
by line with what the commands print (timings and paths aside). Not run here: ``pip install`` lines,
``sparkvision serve`` (tested with the service) and the Spark snippet (the Spark tests train the same
way on the same data).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sparkvision.cli import cli
from sparkvision.models.store import models_root

pytest.importorskip("skimage")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "training.md"
README = ROOT / "README.md"
# Lines of a shown output that change from run to run or machine to machine.
_VOLATILE = re.compile(r"img/s|time:|saved to ")


def _blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``text`` opened with ```` ```language ```` (``""``: no language)."""
    blocks: list[str] = []
    current: list[str] | None = None
    opened_with = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, opened_with = [], line[3:].strip()
            else:
                if opened_with == language:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _commands(block: str) -> list[list[str]]:
    """The ``sparkvision`` / ``python scripts/...`` commands of a bash block, comments removed."""
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [
        c for c in commands if c and c[0] in {"sparkvision", "python"} and c[:2] != ["sparkvision", "serve"]
    ]


def _shown_output(text: str, first_line: str) -> list[str]:
    """The lines of the output block that starts with ``first_line``, volatile ones left out."""
    block = next(b for b in _blocks(text, "") if b.startswith(first_line))
    return [line for line in block.splitlines() if line.strip() and not _VOLATILE.search(line)]


def _run(command: list[str]) -> str:
    if command[0] == "python":
        assert command[1].startswith("scripts/"), command
        done = subprocess.run(
            [sys.executable, str(ROOT / command[1]), *command[2:]],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout
    result = CliRunner().invoke(cli, command[1:])
    assert result.exit_code == 0, f"{shlex.join(command)} failed:\n{result.output}"
    return result.output


def test_the_training_guide_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    guide = GUIDE.read_text(encoding="utf-8")
    commands = [c for block in _blocks(guide, "bash") for c in _commands(block)]
    assert ["python", "scripts/make_training_data.py"] in commands  # the data comes first
    outputs = {shlex.join(c): _run(c) for c in commands}

    evaluated = next(
        out for cmd, out in outputs.items() if cmd.startswith("sparkvision evaluate data/imagenet_val")
    )
    for line in _shown_output(guide, "efficientnet_lite0 on data/imagenet_val"):
        assert line in evaluated, f"the guide shows {line!r}; evaluate printed:\n{evaluated}"
    assert (tmp_path / "eval-report" / "report.md").is_file()
    trained = next(out for cmd, out in outputs.items() if cmd.startswith("sparkvision train"))
    for line in _shown_output(guide, "trained faces"):
        assert line in trained, f"the guide shows {line!r}; train printed:\n{trained}"

    # The Python API section, as written (it replaces the CLI's model, on the cached embeddings).
    api = next(b for b in _blocks(guide, "python") if "from sparkvision.training import" in b)
    exec(compile(api, str(GUIDE), "exec"), {})  # the guide's own code, run in the data's folder
    assert (tmp_path / "eval-report" / "metrics.json").is_file()

    # The README's training commands, on the same data (its `train` names the same model).
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Evaluate and train your own classifier") :]
    shutil.rmtree(models_root() / "faces")
    for command in _commands(_blocks(section, "bash")[0]):
        _run(command)
