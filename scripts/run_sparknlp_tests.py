"""Run Spark NLP's own vision tests against sparkvision, as a Spark NLP user would.

A Spark NLP user who switches changes the star imports (``sparknlp`` → ``sparkvision``) and, where the
default model needs a download, names a model in ``pretrained()``. This script does exactly that to
the test files of a Spark NLP checkout, nothing else, and runs them with pytest from a virtual
environment's python that is **not** on ``PATH`` (as a Jupyter kernel, cron or an IDE starts it)::

    python scripts/run_sparknlp_tests.py ~/src/spark-nlp
    python scripts/run_sparknlp_tests.py ~/src/spark-nlp --images photos/ \\
        --model efficientnet_lite0 --model CLIPForZeroShotClassification=my_clip

What it does, in a temporary folder laid out like the checkout:

1. copies ``python/test/annotator/cv/<name>_test.py`` for ViT, Swin, ConvNeXt, CLIP and
   VisionEncoderDecoder (``--test`` to choose), rewriting only ``import``/``from`` lines that name
   ``sparknlp`` and, when ``--model`` is given, the empty ``pretrained()`` of the named annotators;
2. copies the checkout's ``python/test/util.py`` (its ``SparkSessionForTest``: a plain
   ``SparkSession``, no ``sparkvision.start()``) and ``python/pytest.ini`` unchanged, and adds an
   empty ``python/test/__init__.py``: the checkout has none, and without it Python's standard-library
   ``test`` package would shadow ``test.util``;
3. puts the photos (``--images``, default the checkout's ``src/test/resources/image``) at
   ``src/test/resources/image`` and the checkout's ``src/test/resources/sentiment.parquet`` beside
   them (``test.util`` reads it at import; a small stand-in is written when the checkout lacks it);
4. creates a venv with ``--system-site-packages`` (this checkout's ``src`` first on its path when the
   script runs from a checkout) and runs ``VENV/bin/python -m pytest`` in ``python/`` with a ``PATH``
   that holds the system folders and Java but not the venv, ``VIRTUAL_ENV``/``PYSPARK_PYTHON`` unset.

``--model NAME`` gives NAME to every rewritten ``pretrained()``; ``--model Class=NAME`` to that
annotator only (the more specific wins). Annotators without a name keep ``pretrained()``: their
default model then has to be in the cache or downloadable. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Spark NLP's vision tests for the annotators sparkvision provides.
DEFAULT_TESTS = (
    "vit_for_image_classification",
    "swin_for_image_classification",
    "convnext_for_image_classification",
    "clip_for_zero_shot_classification",
    "vision_encoder_decoder_for_image_captioning",
)
TESTS_DIR = Path("python/test/annotator/cv")
IMAGES_DIR = Path("src/test/resources/image")
PARQUET = Path("src/test/resources/sentiment.parquet")
#: A PATH without the venv: the system's folders (their python3, if any, is not the venv's).
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")

# ``from sparknlp... import ...`` and ``import sparknlp[...]`` (not ``sparknlp_jsl``: ``\b`` stops at ``_``).
_IMPORT = re.compile(r"^(?P<head>[ \t]*(?:from|import)[ \t]+)sparknlp\b(?P<tail>[^\r\n]*)", re.MULTILINE)
_BARE_IMPORT = re.compile(r"[ \t]*(?:#.*)?")  # ``import sparknlp`` alone: keep the name ``sparknlp``
# ``Name.pretrained()``, also split over lines with backslashes, as Spark NLP's tests write it.
_PRETRAINED = re.compile(r"\b(?P<cls>[A-Za-z_]\w*)(?P<gap>(?:\s|\\)*\.pretrained\()\s*\)")


def rewrite(source: str, models: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Return ``source`` with its ``sparknlp`` imports pointed at ``sparkvision`` and the given model
    names in empty ``pretrained()`` calls, and a list saying what was changed.

    ``models`` maps an annotator class name to a model name; the key ``"*"`` applies to every class.
    Nothing else in the text is touched.
    """
    models = models or {}
    changes: list[str] = []

    def imports(match: re.Match[str]) -> str:
        tail = match.group("tail")
        if match.group("head").lstrip().startswith("import") and _BARE_IMPORT.fullmatch(tail):
            tail = " as sparknlp" + tail  # the test goes on calling sparknlp.start() etc.
        line = f"{match.group('head')}sparkvision{tail}"
        changes.append(f"{match.group(0).strip()!r} -> {line.strip()!r}")
        return line

    def pretrained(match: re.Match[str]) -> str:
        name = models.get(match.group("cls"), models.get("*"))
        if name is None:
            return match.group(0)
        changes.append(f"{match.group('cls')}.pretrained() -> .pretrained({name!r})")
        return f"{match.group('cls')}{match.group('gap')}{name!r})"

    return _PRETRAINED.sub(pretrained, _IMPORT.sub(imports, source)), changes


def parse_models(values: Sequence[str]) -> dict[str, str]:
    """``["NAME", "Class=NAME", ...]`` → ``{"*": NAME, "Class": NAME}``."""
    models: dict[str, str] = {}
    for value in values:
        cls, sep, name = value.partition("=")
        if sep and not (cls and name):
            raise SystemExit(f"--model {value!r}: expected NAME or Class=NAME")
        models[cls if sep else "*"] = name if sep else value
    return models


def _stand_in_parquet(path: Path) -> None:
    """What ``test.util`` reads at import when the checkout lacks its binary resources: a few rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": ["stand-in row"] * 3, "label": [0, 1, 0]}), path)


def lay_out(
    checkout: Path, work: Path, images: Path, tests: Sequence[str], models: dict[str, str]
) -> list[Path]:
    """Build the temporary tree under ``work``; return the rewritten test files."""
    cv = work / TESTS_DIR
    cv.mkdir(parents=True, exist_ok=True)
    written = []
    for name in tests:
        source = checkout / TESTS_DIR / f"{name}_test.py"
        if not source.is_file():
            raise SystemExit(f"{source} not found: is {checkout} a Spark NLP checkout?")
        text, changes = rewrite(source.read_text(encoding="utf-8"), models)
        if not any("sparkvision" in change for change in changes):
            raise SystemExit(f"{source}: no 'sparknlp' import to rewrite")
        (cv / source.name).write_text(text, encoding="utf-8")
        written.append(cv / source.name)
        print(f"{source.name}: " + "; ".join(changes))
    test_root = checkout / "python" / "test"
    util = test_root / "util.py"
    if not util.is_file():
        raise SystemExit(f"{util} not found (the tests import SparkSessionForTest from it)")
    shutil.copy(util, work / "python" / "test" / "util.py")
    if not (test_root / "__init__.py").exists():
        (work / "python" / "test" / "__init__.py").write_text("", encoding="utf-8")
    if (checkout / "python" / "pytest.ini").is_file():
        shutil.copy(checkout / "python" / "pytest.ini", work / "python" / "pytest.ini")
    shutil.copytree(images, work / IMAGES_DIR)
    if (checkout / PARQUET).exists():
        copy = shutil.copytree if (checkout / PARQUET).is_dir() else shutil.copy
        copy(checkout / PARQUET, work / PARQUET)
    else:
        print(f"{PARQUET} not in the checkout: a 3-row stand-in is written (test.util reads it at import)")
        _stand_in_parquet(work / PARQUET)
    return written


def make_venv(folder: Path, python: str) -> Path:
    """A venv of ``python`` that sees its packages; this checkout's ``src`` first when run from one."""
    subprocess.run([python, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)], check=True)
    venv_python = folder / "bin" / "python"
    if (ROOT / "src" / "sparkvision").is_dir():
        site = subprocess.run(
            [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        Path(site, "sparkvision_checkout.pth").write_text(f"{ROOT / 'src'}\n", encoding="utf-8")
    return venv_python


def worker_path(java: str | None = None) -> str:
    """The ``PATH`` the tests run with: the system folders, plus the folder of ``java``."""
    folders = list(SYSTEM_PATH)
    java = java or shutil.which("java")
    if java:
        folders.append(str(Path(java).resolve().parent))
    return os.pathsep.join(dict.fromkeys(folders))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a Spark NLP source checkout (holds python/test/)")
    parser.add_argument("--images", type=Path, help="photos (default: CHECKOUT/src/test/resources/image)")
    parser.add_argument(
        "--model", action="append", default=[], metavar="[Class=]NAME", help="name for pretrained()"
    )
    parser.add_argument(
        "--test", action="append", metavar="NAME", help=f"a test module (default: {', '.join(DEFAULT_TESTS)})"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter the venv is made from")
    parser.add_argument("--path", help="PATH for the run (default: system folders and java's folder)")
    parser.add_argument(
        "--keep", type=Path, help="build the tree in this new folder and keep it (default: a temp dir)"
    )
    parser.epilog = "Arguments after -- go to pytest, e.g. -- -k Light -x"
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    checkout = args.checkout.resolve()
    images = (args.images or checkout / IMAGES_DIR).resolve()
    if not images.is_dir():
        raise SystemExit(f"{images}: no such folder of photos (give --images DIR)")
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="sparknlp-tests-"))
    if args.keep and work.exists() and any(work.iterdir()):
        raise SystemExit(f"--keep {work}: the folder exists and is not empty")
    files = lay_out(checkout, work, images, args.test or DEFAULT_TESTS, parse_models(args.model))
    python = make_venv(work / "venv", args.python)

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env["PATH"] = args.path or worker_path()
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if str(python.parent) in env["PATH"].split(os.pathsep):
        raise SystemExit("the venv must not be on PATH")
    found = shutil.which("python3", path=env["PATH"])
    imports = (
        found and subprocess.run([found, "-c", "import sparkvision"], capture_output=True).returncode == 0
    )
    print(f"venv python: {python} (not on PATH)\nPATH: {env['PATH']}")
    print(f"python3 on that PATH: {found} ({'imports' if imports else 'cannot import'} sparkvision)")
    command = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-rA"]
    command += [str(f.relative_to(work / "python")) for f in files] + pytest_args
    print("running:", " ".join(command), f"(in {work / 'python'})", flush=True)
    code = subprocess.run(command, cwd=work / "python", env=env).returncode
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
