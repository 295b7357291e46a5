"""Fixtures for the Spark tests: one local[2] session for the whole run, real photos, small models.

The session is started once (about 10 s) and shared; tests that need a different master (the
local-cluster distribution test) run in a subprocess. Set ``SPARK_LOCAL_IP`` so Spark never tries to
resolve the machine's public name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)

from spark_helpers import write_bad_images, write_good_images, write_tiny_model


@pytest.fixture(scope="session")
def spark():
    import sparkvision

    session = sparkvision.start(
        "local[2]",
        "2g",
        app_name="sparkvision-tests",
        **{
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny_colour")


@pytest.fixture(scope="session")
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``good``: photos, an RGBA PNG, a gray PNG. ``mixed``: the same plus corrupt/empty/truncated."""
    root = tmp_path_factory.mktemp("images")
    good = write_good_images(root / "good")
    mixed = root / "mixed"
    write_good_images(mixed)
    bad = write_bad_images(mixed)
    return {"good": root / "good", "mixed": mixed, **bad, "good_files": good}  # type: ignore[dict-item]


@pytest.fixture(scope="session")
def lite0_stage():
    """The real default model as a Spark stage (converted into the test cache on first use)."""
    from sparkvision.annotator import EfficientNetForImageClassification

    return EfficientNetForImageClassification.pretrained()
