"""``scripts/run_sparknlp_tests.py``, the runner of Spark NLP's own vision tests, on a synthetic checkout.

The checkout here is written by this test (our own text, in the shape of Spark NLP's: star imports, a
``pretrained()`` split over lines with backslashes, ``from test.util import SparkSessionForTest``, the
photos under ``src/test/resources/image`` read relative to ``python/``). Its one test file checks, from
inside the runner's pytest, what the runner promises: only the imports and the ``pretrained()`` names
changed, ``test.util`` is the checkout's, the photos are where the tests look, and the interpreter is a
venv's python that is not on ``PATH``. No Spark job runs, so this stays quick.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "images"
_spec = importlib.util.spec_from_file_location(
    "run_sparknlp_tests", ROOT / "scripts" / "run_sparknlp_tests.py"
)
runner = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(runner)  # type: ignore[union-attr]

SYNTHETIC_TEST = """\
import os
import sys
import unittest

from sparknlp.annotator import *
from sparknlp.base import *
import sparknlp
from test.util import SparkSessionForTest


def stages():  # read, not run: the models named here are not in this test's cache
    clip = CLIPForZeroShotClassification \\
        .pretrained()
    vit = ViTForImageClassification.pretrained("as_written")
    swin = SwinForImageClassification.pretrained()
    return clip, vit, swin


class RunnerPromisesSpec(unittest.TestCase):
    def runTest(self):
        source = open(__file__, encoding="utf-8").read()
        self.assertEqual(SparkSessionForTest.origin, "the checkout's util.py")
        self.assertTrue(ImageAssembler and LightPipeline and Pipeline and ViTForImageClassification)
        self.assertEqual(sparknlp.__name__, "sparkvision")
        self.assertIn("CLIPForZeroShotClassification \\\\\\n        .pretrained('tiny_clip')", source)
        self.assertIn("SwinForImageClassification.pretrained('lite')", source)
        self.assertIn('ViTForImageClassification.pretrained("as_written")', source)
        images = os.listdir(os.getcwd() + "/../src/test/resources/image/")
        self.assertIn("egyptian_cat.jpeg", images)
        venv_bin = os.path.dirname(sys.executable)
        self.assertTrue(os.path.exists(os.path.join(venv_bin, "..", "pyvenv.cfg")))
        self.assertNotIn(venv_bin, os.environ["PATH"].split(os.pathsep))
        self.assertNotIn("PYSPARK_PYTHON", os.environ)
"""


def test_rewrite_changes_only_imports_and_empty_pretrained_calls():
    source = (
        "import sparknlp\nimport sparknlp_jsl\nfrom sparknlp.base import *\r\n"
        "from sparknlp.annotator import *  # all of it\n"
        'x = ViTForImageClassification \\\n    .pretrained() \\\n    .setInputCols("a")\n'
        'y = CLIPForZeroShotClassification.pretrained()\nz = Swin.pretrained("kept")\n'
        'text = "from sparknlp.base import *"\n'
    )
    rewritten, changes = runner.rewrite(source, {"*": "lite", "CLIPForZeroShotClassification": "clip"})
    assert rewritten == (
        "import sparkvision as sparknlp\nimport sparknlp_jsl\nfrom sparkvision.base import *\r\n"
        "from sparkvision.annotator import *  # all of it\n"
        "x = ViTForImageClassification \\\n    .pretrained('lite') \\\n    .setInputCols(\"a\")\n"
        "y = CLIPForZeroShotClassification.pretrained('clip')\nz = Swin.pretrained(\"kept\")\n"
        'text = "from sparknlp.base import *"\n'
    )
    assert len(changes) == 5
    assert runner.rewrite(source)[0].count(".pretrained()") == 2  # no model given: defaults kept
    assert runner.parse_models(["lite", "CLIPForZeroShotClassification=clip"]) == {
        "*": "lite",
        "CLIPForZeroShotClassification": "clip",
    }
    with pytest.raises(SystemExit):
        runner.parse_models(["Class="])


@pytest.mark.slow
def test_runner_runs_a_checkouts_test_from_a_venv_python_not_on_path(tmp_path, capfd):
    checkout = tmp_path / "spark-nlp"
    cv = checkout / "python" / "test" / "annotator" / "cv"
    cv.mkdir(parents=True)
    (cv / "vit_for_image_classification_test.py").write_text(SYNTHETIC_TEST, encoding="utf-8")
    (checkout / "python" / "test" / "util.py").write_text(
        'class SparkSessionForTest:\n    origin = "the checkout\'s util.py"\n', encoding="utf-8"
    )
    images = checkout / "src" / "test" / "resources" / "image"
    images.mkdir(parents=True)
    shutil.copy(EXAMPLES / "chelsea.jpg", images / "egyptian_cat.jpeg")

    code = runner.main(
        [
            str(checkout),
            "--test", "vit_for_image_classification",
            "--model", "lite",
            "--model", "CLIPForZeroShotClassification=tiny_clip",
            "--python", sys.executable,
        ]
    )  # fmt: skip
    out = capfd.readouterr().out
    assert code == 0, out[-3000:]
    assert "1 passed" in out
    assert "not on PATH" in out and "stand-in" in out  # the checkout has no sentiment.parquet
