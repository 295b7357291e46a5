"""Check that a plain ``pip install sparkvision`` stays small and works: the install-size budget.

Creates a fresh virtual environment (with pip, as a user's would be), installs this checkout without
extras, and measures its ``site-packages`` the way ``du`` does (allocated blocks, byte-compiled files
included). Fails when that is over the budget (250 MiB by default), or when README quick-start
command 1 (``sparkvision classify examples/images``) does not run in that environment. Prints the
size of every installed distribution, largest first, so a new heavy dependency is easy to spot.

Run by ``.ci/run``; it needs pip to reach a package index (the local one in CI) and takes about a
minute, mostly pip's downloads and unpacking::

    python scripts/install_size.py                 # --limit-mib 250
    python scripts/install_size.py --keep /tmp/sv  # keep the venv there for a look around
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

# Run inside the new venv: bytes on disk per installed distribution (from its RECORD).
_PER_DISTRIBUTION = r"""
import importlib.metadata as md, json, os
rows = []
for dist in md.distributions():
    used = 0
    for f in dist.files or []:
        try:
            used += os.stat(dist.locate_file(f)).st_blocks * 512
        except OSError:
            pass
    rows.append((dist.metadata["Name"], dist.version, used))
print(json.dumps(sorted(rows, key=lambda r: -r[2])))
"""


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (what ``du`` counts), each hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, _, files in os.walk(path):
        for name in [".", *files]:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print(
        "$",
        " ".join(arg if len(arg) < 60 else arg.strip().splitlines()[0] + " …" for arg in command),
        flush=True,
    )
    return subprocess.run(command, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def check(venv: Path, limit_mib: float) -> int:
    """Install into a new ``venv``, measure, smoke-test; returns the exit status."""
    started = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)])
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
        ).stdout.strip()
    )
    rows = json.loads(_run([str(python), "-c", _PER_DISTRIBUTION], capture_output=True).stdout)
    for name, version, used in rows:
        print(f"{used / MIB:8.1f} MiB  {name} {version}")
    size = disk_usage(site) / MIB
    print(f"{size:8.1f} MiB  site-packages in all ({site}); budget {limit_mib:g} MiB")

    # README quick start, command 1, in the new environment (own model cache, no network needed).
    with tempfile.TemporaryDirectory(prefix="sparkvision-home-") as home:
        env = {**os.environ, "SPARKVISION_HOME": home, "PYTHONPATH": ""}
        table = _run(
            [
                str(venv / "bin" / "sparkvision"),
                "classify",
                "--no-progress",
                str(ROOT / "examples" / "images"),
            ],
            capture_output=True,
            env=env,
        ).stdout
    print(table)
    print(f"done in {time.perf_counter() - started:.0f} s")
    if size > limit_mib:
        print(
            f"FAIL: a plain install takes {size:.1f} MiB, over the {limit_mib:g} MiB budget", file=sys.stderr
        )
        return 1
    if "label" not in table or len(table.splitlines()) < 3:
        print("FAIL: `sparkvision classify examples/images` printed no table", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mib", type=float, default=250.0, help="budget for site-packages (MiB)")
    parser.add_argument("--keep", type=Path, help="create the venv here and keep it (must not exist)")
    args = parser.parse_args()
    if args.keep is not None:
        return check(args.keep, args.limit_mib)
    with tempfile.TemporaryDirectory(prefix="sparkvision-install-size-") as tmp:
        return check(Path(tmp) / "venv", args.limit_mib)


if __name__ == "__main__":
    sys.exit(main())
