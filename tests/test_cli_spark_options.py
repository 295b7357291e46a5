"""``classify --spark`` is a flag (local[*]) and ``--spark-master URL`` names a master: a path after
``--spark`` is a path, never taken for the master (``--spark PATH`` used to swallow the first path)."""

from __future__ import annotations

from click.testing import CliRunner

from sparkvision.cli import cli
from sparkvision.cli.classify import classify


def _params(*args: str) -> dict:
    return classify.make_context("classify", list(args)).params


def test_paths_after_spark_are_paths():
    params = _params("--spark", "photos", "more_photos")
    assert params["paths"] == ("photos", "more_photos")
    assert params["use_spark"] is True and params["spark_master"] is None  # local[*] when the job runs


def test_spark_master_takes_its_url():
    params = _params("photos", "--spark-master", "spark://head:7077", "b.jpg")
    assert params["paths"] == ("photos", "b.jpg") and params["spark_master"] == "spark://head:7077"
    assert _params("photos")["use_spark"] is False


def test_spark_master_needs_a_value_and_help_says_so():
    help_text = CliRunner().invoke(cli, ["classify", "--help"]).output
    assert "--spark-master URL" in help_text and "--spark " in help_text
    missing_value = CliRunner().invoke(cli, ["classify", "photos", "--spark-master"])
    assert missing_value.exit_code == 2 and "requires an argument" in missing_value.output
