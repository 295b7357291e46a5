"""Run a command as if this x86 CPU had AVX2 but no AVX-512, VNNI or AMX — natively, at full speed.

Our machines come in two kinds, AVX2-only and AVX-512/VNNI, and ONNX Runtime picks different int8
kernels on them (on AVX2, ``VPMADDUBSW``, which saturates with 8-bit weights; see
``sparkvision.models.quantize.reduce_range_for_cpu``). With only the second kind at hand, this
wrapper uses Linux's CPUID faulting (``arch_prctl(ARCH_SET_CPUID)``, flag ``cpuid_fault``) to hide
the newer features from the command: every CPUID instruction traps into a handler
(``scripts/avx2_only.c``, built with gcc on first use) that clears the AVX-512, VNNI and AMX bits,
and ``/proc/cpuinfo`` reads lose the same flags. ONNX Runtime, NumPy and OpenBLAS then run their
AVX2 kernels on the real core — so, unlike ``qemu-x86_64 -cpu Haswell-noTSX``
(``scripts/check_int8_avx2.py``), the *times* mean something: the same core, with only the
instructions an AVX2-only CPU has. It is still this core (its caches, clocks and memory), not an
AVX2-only machine: quote its figures as "the AVX2 code path on <this CPU>".

    python scripts/avx2_only.py --check                   # what the command will see
    python scripts/avx2_only.py -- python benchmarks/throughput.py --count 200 --core-time

Models built under it (int8 ones get the weight range of a CPU without VNNI) go to the same cache
as any other run: set ``SPARKVISION_HOME`` to keep them apart from the machine's own.

Only for NumPy / ONNX Runtime processes: a program that installs its own SIGSEGV handler (a JVM,
Python's faulthandler — so not pytest) receives the traps instead and dies; this script unsets
``PYTHONFAULTHANDLER`` for that reason.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_suffix(".c")


class Unavailable(RuntimeError):
    """This machine cannot hide CPU features natively (no CPUID faulting, not x86-64 Linux, no gcc)."""


def supported() -> str | None:
    """``None`` when CPUID faulting can be used here, else why not."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "needs x86-64 Linux"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "cannot read /proc/cpuinfo"
    if " cpuid_fault" not in cpuinfo:
        return "this CPU / hypervisor does not offer CPUID faulting (no 'cpuid_fault' flag)"
    if shutil.which("gcc") is None:
        return "needs gcc to build scripts/avx2_only.c"
    return None


def library() -> Path:
    """The preload library, built from ``avx2_only.c`` into the user cache (once per source version)."""
    problem = supported()
    if problem:
        raise Unavailable(problem)
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparkvision" / "tools"
    built = cache / f"avx2_only-{digest}.so"
    if not built.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = built.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(
            ["gcc", "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-ldl"],
            check=True,
        )
        partial.replace(built)
    return built


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the library preloaded."""
    env = dict(os.environ if base is None else base)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = f"{library()} {preload}".strip()
    env.pop("PYTHONFAULTHANDLER", None)
    return env


_CHECK = """
import numpy, onnxruntime
from numpy._core._multiarray_umath import __cpu_features__ as f
from sparkvision.models.quantize import cpu_flags, reduce_range_for_cpu
flags = cpu_flags() or frozenset()
print("NumPy's CPUID: AVX2", f.get("AVX2"), "AVX512F", f.get("AVX512F"))
print("/proc/cpuinfo: avx2", "avx2" in flags, "avx512f", "avx512f" in flags, "avx512_vnni", "avx512_vnni" in flags,
      "amx_int8", "amx_int8" in flags)
print("sparkvision's int8 weight range for this CPU:", reduce_range_for_cpu())
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="show what a masked Python process sees")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.check:
        command = [sys.executable, "-c", _CHECK]
    if not command:
        parser.error("give a command after --, or --check")
    try:
        env = environment()
    except Unavailable as exc:
        print(f"avx2_only: {exc}", file=sys.stderr)
        return 2
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
