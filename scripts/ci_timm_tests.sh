#!/usr/bin/env bash
# Run the timm import tests (tests/timm_models, marker "timm") in their own virtual environment.
#
# Why a separate environment: timm needs torchvision, and the only torchvision that imports on this
# platform beside a matching torch is torchvision 0.29.1 with torch 2.14.1 (a CUDA build that also runs
# on the CPU, ~5.5 GB installed). The main test environment keeps torch 2.13.0 (CPU, small). The venv is
# created once (.venv-timm, ignored by git; ~3.5 min from the local wheels on a 2-core machine) and
# reused while it still imports its heavy packages; sparkvision itself is (re)installed editable from
# this checkout on every run (seconds), so a venv kept outside the checkout stays valid.
#
# Usage: scripts/ci_timm_tests.sh [extra pytest arguments]
#   SPARKVISION_TIMM_VENV  where the venv lives (default: .venv-timm in the repository root; point it
#                          outside the checkout, e.g. ~/.cache/sparkvision/venv-timm, to keep it between clones)
#   PYTHON                 the interpreter that creates it (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SPARKVISION_TIMM_VENV:-$ROOT/.venv-timm}"
PY="$VENV/bin/python"

ready() {
    [ -x "$PY" ] && "$PY" -c "import timm, torchvision, onnxruntime, safetensors, skimage, pytest" 2>/dev/null
}

if ! ready; then
    started=$(date +%s)
    echo "ci_timm_tests: creating $VENV (torch 2.14.1 + torchvision 0.29.1 + timm)..." >&2
    "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" "timm>=1.0.20" safetensors \
        "onnx>=1.15" "onnxruntime>=1.17" pytest "scikit-image>=0.22"
    echo "ci_timm_tests: venv ready in $(( $(date +%s) - started )) s" >&2
fi
"$PY" -m pip install --quiet -e "$ROOT[lite12]"  # the Lite1/2 weights: the preprocessing reference covers all three

exec "$PY" -m pytest "$ROOT/tests/timm_models" -m timm -p no:cacheprovider "$@"
