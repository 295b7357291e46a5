"""int8 weights per CPU: 8 bits where ONNX Runtime's int8 kernels accumulate exactly (VNNI, AMX); elsewhere,
where its AVX2 kernel (VPMADDUBSW) adds two neighbouring products in a saturating 16-bit lane, 8 bits
with each such pair of weights within 128 steps ("pairs"); and the evidence for the rule, on ONNX
Runtime's AVX2 code path: natively, with AVX-512/VNNI/AMX hidden by CPUID faulting
(``scripts/avx2_only.py``), and under QEMU emulation when qemu-user is installed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_outputs import mean_kl, probabilities
from sparkvision import Classifier
from sparkvision.models import quantize as quantize_module
from sparkvision.models.catalogue import resolve_model
from sparkvision.models.quantize import cpu_flags, quantize_model_dir, reduce_range_for_cpu, shipped_ranges

HASWELL = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (HASWELL, "pairs"),  # AVX2 only: VPMADDUBSW saturates
        (HASWELL | {"avx512f", "avx512bw", "avx512vl"}, "pairs"),  # Skylake-X: AVX-512 without VNNI
        (HASWELL | {"avx512f", "avx512bw", "avx512_vnni"}, False),  # Cascade Lake and later Xeons
        (HASWELL | {"avx_vnni"}, False),  # Alder Lake: AVX-VNNI without AVX-512
        (HASWELL | {"amx_tile", "amx_int8"}, False),
        (set(), "pairs"),  # nothing known: the safe range
    ],
)
def test_weight_range_rule(flags: set[str], expected: object) -> None:
    assert reduce_range_for_cpu(flags) == expected


def test_this_cpu_flags_are_read() -> None:
    flags = cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags here")
    assert "sse2" in flags  # every x86-64 CPU
    assert reduce_range_for_cpu() == reduce_range_for_cpu(flags)


def test_dense_range_keeps_8_bit_depthwise_weights(lite0: Classifier, tmp_path: Path) -> None:
    """``"dense"``: 7-bit weights (|w| <= 64) in the 1×1 convolutions and the classifier, 8-bit ones
    (up to 127) in the depthwise convolutions; the choice is in the spec. (The stem and block 0 stay
    in float: ``float_nodes`` in the shipped ranges.)"""
    import onnx
    from onnx import numpy_helper

    spec = quantize_model_dir(
        lite0.model_dir, shipped_ranges("efficientnet_lite0"), tmp_path, name="x", reduce_range="dense"
    )
    assert spec.extra["quantization"]["reduce_range"] == "dense"
    assert "7-bit range except depthwise" in spec.extra["quantization"]["weights"]
    model = onnx.load(str(tmp_path / "model.onnx"))
    peaks = {
        i.name: int(np.abs(numpy_helper.to_array(i).astype(np.int32)).max())
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("weight_quantized")
    }
    depthwise = {k: v for k, v in peaks.items() if "depthwise" in k}
    dense = {k: v for k, v in peaks.items() if "depthwise" not in k}
    assert len(depthwise) == 15 and len(dense) == 32  # blocks 1-15: expand + project; head; classifier
    assert max(dense.values()) == 64
    assert min(depthwise.values()) == 127


def _int8_weights(model_file: Path) -> dict[str, np.ndarray]:
    """The int8 weights of each quantized convolution / classifier (by weight name)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_file))
    return {
        i.name.removesuffix("_quantized"): numpy_helper.to_array(i).astype(np.int32)
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.INT8 and i.name.endswith("weight_quantized")
    }


def test_pairs_range_keeps_8_bits_within_the_pair_limit(lite0: Classifier, tmp_path: Path) -> None:
    """``"pairs"`` (what CPUs without VNNI get): in every 1×1 convolution and the classifier, input
    channels 2j and 2j+1 of an output channel reach at most 128 steps together, so the AVX2 kernel's
    16-bit pair sums cannot saturate (255 × 128 < 32,768); the weights still use the 8-bit range
    (single weights up to 127, most layers' peaks far above 7-bit's 64), and the depthwise ones are
    plain 8-bit."""
    spec = quantize_model_dir(
        lite0.model_dir, shipped_ranges("efficientnet_lite0"), tmp_path, name="x", reduce_range="pairs"
    )
    assert spec.extra["quantization"]["reduce_range"] == "pairs"
    assert "pairs within 128" in spec.extra["quantization"]["weights"]
    weights = _int8_weights(tmp_path / "model.onnx")
    depthwise = {k: w for k, w in weights.items() if "depthwise" in k}
    dense = {k: w for k, w in weights.items() if "depthwise" not in k}
    assert len(depthwise) == 15 and len(dense) == 32
    assert all(np.abs(w).max() == 127 for w in depthwise.values())
    for name, w in dense.items():
        rows = w.reshape(w.shape[0], -1) if w.ndim == 4 else w  # Conv (out, in, 1, 1); Gemm (out, in)
        pair_sums = np.abs(rows[:, 0::2]) + np.abs(rows[:, 1::2])
        assert pair_sums.max() <= 128, name
    peaks = sorted(int(np.abs(w).max()) for w in dense.values())
    assert peaks[len(peaks) // 2] >= 90 and peaks[-1] == 127  # 8-bit steps, not 7-bit ones


def test_pairs_weights_follow_fp32_closer_than_7_bit_ones(lite0: Classifier, tmp_path: Path) -> None:
    """The point of ``"pairs"``: on real photos its logits stay closer to fp32's than session 6's 7-bit
    dense weights (measured: the KL divergence about a third lower on Lite0, two thirds on Lite2)."""
    from real_photos import photo_set

    batch = np.stack([lite0.prepare(np.asarray(image)).pixels for _, image in photo_set()[::3]])

    fp32 = probabilities(lite0.model_dir / "model.onnx", batch)
    kl = {}
    for weights in ("pairs", "dense"):
        quantize_model_dir(
            lite0.model_dir, shipped_ranges("efficientnet_lite0"), tmp_path / weights, name=weights,
            reduce_range=weights,
        )  # fmt: skip
        kl[weights] = mean_kl(fp32, probabilities(tmp_path / weights / "model.onnx", batch))
    assert kl["pairs"] < 0.85 * kl["dense"], kl


def test_a_cached_int8_model_built_for_another_cpu_is_built_again(
    lite0: Classifier, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The weight range is part of the cached model's identity: the same cache on an AVX2-only machine
    gets pair-limited weights, and back on a VNNI machine 8-bit ones; a model built by session 6's
    rule (7-bit dense weights) is built again too."""
    here = reduce_range_for_cpu()
    other, other_flags = ("pairs", HASWELL) if here is False else (False, HASWELL | {"avx512_vnni"})
    directory, spec = resolve_model("efficientnet_lite0_int8")
    assert spec.extra["quantization"]["reduce_range"] == here
    built_at = (directory / "model.onnx").stat().st_mtime_ns
    try:
        monkeypatch.setattr(quantize_module, "cpu_flags", lambda: frozenset(other_flags))
        with caplog.at_level("WARNING", logger="sparkvision.models.catalogue"):
            again, spec = resolve_model("efficientnet_lite0_int8")
        assert again == directory and spec.extra["quantization"]["reduce_range"] == other
        assert "built for another kind of CPU; building it again" in caplog.text
        assert "older sparkvision" not in caplog.text
        assert (directory / "model.onnx").stat().st_mtime_ns != built_at
    finally:
        monkeypatch.undo()
        _, spec = resolve_model("efficientnet_lite0_int8")
    assert spec.extra["quantization"]["reduce_range"] == here


def test_an_8_bit_model_on_a_cpu_without_vnni_is_warned_about(
    lite0: Classifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model quantized elsewhere (a saved Spark pipeline, a ``sparkvision quantize`` output) is not
    rebuilt: running 8-bit weights where the kernel saturates says so, once; pair-limited or 7-bit
    dense weights there, and 8-bit ones on a VNNI CPU, run silently."""
    ranges = shipped_ranges("efficientnet_lite0")
    photo = Path(__file__).parent.parent / "examples" / "images" / "coffee.jpg"
    models = {}
    for name, weights in (("eight", False), ("pairs", "pairs"), ("dense", "dense")):
        spec = quantize_model_dir(lite0.model_dir, ranges, tmp_path / name, name=name, reduce_range=weights)
        spec.save(tmp_path / name)
        models[name] = Classifier(tmp_path / name)
    for flags, warned in ((HASWELL | {"avx512_vnni"}, set()), (HASWELL, {"eight"})):
        monkeypatch.setattr(quantize_module, "cpu_flags", lambda f=flags: frozenset(f))
        monkeypatch.setattr(quantize_module, "_CHECKED_FOR_SATURATION", set())
        caplog.clear()
        with caplog.at_level("WARNING", logger="sparkvision.models.quantize"):
            for model in models.values():
                model.classify_batch([photo, photo])
                model.classify_batch([photo])
        said = [r.getMessage() for r in caplog.records if "saturates" in r.getMessage()]
        assert len(said) == len(warned)
        assert all(f"int8 model {name!r}" in said[0] for name in warned)


# -- the evidence: ONNX Runtime's int8 GEMM on its AVX2 code path, under QEMU --------------------------
QEMU = shutil.which("qemu-x86_64")

_GEMM = """
import sys, numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
a = rng.integers(128, 256, (16, 256)).astype(np.uint8)  # large activations, as after ReLU6
a[:, :8] = 255
signs = rng.choice([-1, 1], (1, 32))
patterns = {  # the weights of each output column along K (the input channels), repeated
    "8bit": [127, 127], "7bit": [64, 64],
    "pairs": [1, 127, 2, 126],  # pairs (0, 1), (2, 3) reach 128; (1, 2) would reach 129
    "129": [127, 2],
}
for name, pattern in patterns.items():
    b = (np.resize(np.array(pattern), 256)[:, None] * signs).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [16, 256])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [16, 32])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"A": a})[0]
    print(name, int(np.abs(y - a.astype(np.int64) @ b.astype(np.int64)).max()))
"""


def _gemm_errors(prefix: list[str], env: dict[str, str] | None = None) -> dict[str, int]:
    """Largest error of ONNX Runtime's u8 × s8 ``MatMulInteger`` against exact integer arithmetic, for
    each weight pattern of ``_GEMM``, in a Python started with ``prefix`` (e.g. under QEMU) and ``env``."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _GEMM],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=env,
    )
    return {p: int(e) for p, e in (line.split() for line in done.stdout.splitlines())}


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (apt-get install qemu-user)")
def test_avx2_int8_gemm_saturates_with_8_bit_weights_not_7_or_pairs() -> None:
    """Under ``qemu-x86_64 -cpu Haswell-noTSX`` (AVX2, no AVX-512, no VNNI) ONNX Runtime takes its AVX2
    kernel: 8-bit weights against large activations come out wrong (saturated); 7-bit ones, and
    8-bit ones whose neighbouring input channels (0 and 1, 2 and 3, …) reach at most 128 steps
    together, exact — even where channels 1 and 2 reach 129, so the pairs are aligned as
    :func:`reduce_range_for_cpu` assumes; one step more (127 + 2) saturates. If an ONNX Runtime
    release stops saturating, the first assertion fails: then 8-bit weights may serve every CPU."""
    assert QEMU is not None
    emulated = _gemm_errors([QEMU, "-cpu", "Haswell-noTSX"])
    assert emulated["8bit"] > 1000, emulated
    assert emulated["7bit"] == 0 and emulated["pairs"] == 0, emulated
    assert emulated["129"] > 0, emulated
    if reduce_range_for_cpu() is False:  # this CPU has VNNI/AMX: exact with 8-bit weights
        assert set(_gemm_errors([]).values()) == {0}


# -- the same natively: this CPU with AVX-512, VNNI and AMX hidden (CPUID faulting) -------------------
def _avx2_only():
    """``scripts/avx2_only.py`` as a module, or a skip where this machine cannot hide CPU features."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "avx2_only.py"
    spec = importlib.util.spec_from_file_location("avx2_only", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    problem = module.supported()
    if problem:
        pytest.skip(f"cannot hide CPU features here: {problem}")
    return module


def test_avx2_code_path_natively_saturates_with_8_bit_weights_not_7_or_pairs() -> None:
    """With AVX-512/VNNI/AMX hidden from CPUID, ONNX Runtime runs its AVX2 int8 kernel on the real core
    (QEMU's findings, reproduced natively: pairs aligned at even channels, 128 steps exact, 129 not),
    and sparkvision reads the same CPU from /proc/cpuinfo."""
    env = _avx2_only().environment()
    masked = _gemm_errors([], env=env)
    assert masked["8bit"] > 1000, masked
    assert masked["7bit"] == 0 and masked["pairs"] == 0, masked
    assert masked["129"] > 0, masked
    seen = subprocess.run(
        [sys.executable, "-c", "from sparkvision.models.quantize import *; print(reduce_range_for_cpu())"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert seen.stdout.strip() == "pairs"


_LOGITS = """
import sys, numpy as np, onnxruntime as ort
from sparkvision.models.catalogue import resolve_model
from sparkvision.models.store import load_model_dir
folder = resolve_model("efficientnet_lite0_int8")[0]
print(load_model_dir(folder).extra["quantization"]["reduce_range"])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
np.save(sys.argv[2], session.run(None, {session.get_inputs()[0].name: np.load(sys.argv[1])})[0])
"""


@pytest.mark.slow
def test_on_an_avx2_cpu_the_catalogue_int8_model_is_pairs_and_exact(
    lite0: Classifier, tmp_path: Path
) -> None:
    """On the AVX2 code path the catalogue's int8 model is built with pair-limited weights, and its
    logits are bit-identical to the same model run on this CPU's VNNI/AMX kernels: AVX2-only machines
    get exactly the accuracy the tests measure here for that range."""
    env = _avx2_only().environment()
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "efficientnet_lite0").symlink_to(lite0.model_dir)  # the fp32 model, not rebuilt
    env["SPARKVISION_HOME"] = str(home)
    from PIL import Image

    from sparkvision.models.store import load_model_dir
    from sparkvision.preprocess import preprocess_batch

    photos = sorted((Path(__file__).resolve().parents[1] / "examples" / "images").glob("*.jpg"))
    assert len(photos) >= 4
    batch = preprocess_batch(
        [Image.open(p).convert("RGB") for p in photos], load_model_dir(lite0.model_dir).preprocess
    )
    np.save(tmp_path / "x.npy", batch)
    done = subprocess.run(
        [sys.executable, "-c", _LOGITS, str(tmp_path / "x.npy"), str(tmp_path / "masked.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "pairs"

    import onnxruntime as ort

    quantize_model_dir(
        lite0.model_dir,
        shipped_ranges("efficientnet_lite0"),
        tmp_path / "native",
        name="n",
        reduce_range="pairs",
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tmp_path / "native" / "model.onnx"), options)
    native = session.run(None, {session.get_inputs()[0].name: batch})[0]
    np.testing.assert_array_equal(np.load(tmp_path / "masked.npy"), native)


def test_int8_models_built_by_the_7_bit_rule_are_built_again(
    lite0: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 6 gave CPUs without VNNI 7-bit dense weights (``"dense"``); no CPU gets them now, so a
    cached catalogue model built that way counts as built for another CPU, on either kind."""
    from sparkvision.models.quantize import built_for_this_cpu

    _, spec = resolve_model("efficientnet_lite0_int8")

    def built_with(weights: object):
        quantization = {**spec.extra["quantization"], "reduce_range": weights}
        return spec.with_changes(extra={**spec.extra, "quantization": quantization})

    for flags in (HASWELL, HASWELL | {"avx512_vnni"}):
        monkeypatch.setattr(quantize_module, "cpu_flags", lambda f=flags: frozenset(f))
        assert not built_for_this_cpu(built_with("dense"))
        assert built_for_this_cpu(built_with(reduce_range_for_cpu()))
