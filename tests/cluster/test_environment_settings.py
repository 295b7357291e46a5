"""The packed environment's settings and the pack-env command's checks (no cluster, no Spark job)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sparkvision import ConfigError
from sparkvision.cli import cli
from sparkvision.spark.cluster import EXECUTOR_PYTHON, environment_settings, executor_python


def test_a_local_archive_is_shipped_under_the_environment_alias(tmp_path: Path):
    archive = tmp_path / "env.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    assert environment_settings(archive) == {"spark.archives": f"{archive.resolve().as_uri()}#environment"}
    assert environment_settings("hdfs://nn/envs/env.tgz") == {
        "spark.archives": "hdfs://nn/envs/env.tgz#environment"
    }


@pytest.mark.parametrize(
    ("name", "create", "message"),
    [
        ("missing.tar.gz", False, "pack-env"),
        ("env.tar", True, ".tar.gz, .tgz"),  # Spark's Java unpacker refuses venv-pack's python link
        ("env.zip", True, ".tar.gz, .tgz"),
        ("env.tar.gz#other", False, "without '#alias'"),
    ],
)
def test_unusable_archives_are_refused_with_the_fix(tmp_path: Path, name: str, create: bool, message: str):
    path = tmp_path / name
    if create:
        path.write_bytes(b"x")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        environment_settings(str(path))


def test_executor_python_is_set_only_while_the_context_starts(monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", "/usr/bin/python3")
    with executor_python():
        assert os.environ["PYSPARK_PYTHON"] == EXECUTOR_PYTHON == "./environment/bin/python"
    assert os.environ["PYSPARK_PYTHON"] == "/usr/bin/python3"


def test_pack_env_refuses_a_format_spark_cannot_unpack_before_building(tmp_path: Path):
    result = CliRunner().invoke(cli, ["cluster", "pack-env", str(tmp_path / "env.zip")])
    assert result.exit_code == 2
    assert ".tar.gz, .tgz" in result.output
    assert not list(tmp_path.iterdir())
