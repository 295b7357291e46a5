"""int8 models: built offline from the fp32 model plus the shipped activation ranges, and an accuracy
guard against the fp32 model on every real photo the tests have (a regression in the ranges, the
quantization scheme or ONNX Runtime's int8 kernels fails here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from model_outputs import mean_kl, probabilities
from real_photos import LABELLED, photo_set
from sparkvision import Classifier
from sparkvision.cli import cli
from sparkvision.errors import ConfigError, ModelFormatError
from sparkvision.models.catalogue import resolve_model, with_precision
from sparkvision.models.quantize import (
    ActivationRanges,
    collect_ranges,
    quantize,
    quantize_model_dir,
    reduce_range_for_cpu,
    shipped_ranges,
)
from sparkvision.models.store import build_model_dir


@pytest.fixture(scope="session")
def lite0_int8(lite0: Classifier) -> Classifier:
    """efficientnet_lite0_int8, built into the test cache from the cached fp32 model (no images)."""
    return Classifier.pretrained("efficientnet_lite0_int8")


_ON_PHOTOS: dict[tuple[int, str], tuple] = {}


def on_photos(variant: int, weights: str = "this CPU", cache: Path | None = None) -> tuple:
    """``(photo names, fp32 top 5s, int8 top 5s, int8 spec)`` of efficientnet_lite<variant> on the 102
    photos (computed once per test session). ``weights="this CPU"``: the catalogue's int8 model, built
    for this machine; ``"no VNNI"``: built with the weights CPUs without VNNI get (pair-limited 8-bit
    weights in the dense layers; integer arithmetic that cannot saturate, so bit-identical to what ONNX
    Runtime's AVX2 kernel computes there: ``scripts/check_int8_avx2.py`` compares the two under QEMU),
    into ``cache``."""
    key = (variant, weights)
    if key not in _ON_PHOTOS:
        photos = photo_set()
        images = [np.asarray(image) for _, image in photos]
        name = f"efficientnet_lite{variant}"
        fp32 = Classifier.pretrained(name)
        if weights == "no VNNI":
            assert cache is not None
            target = cache / f"{name}_no_vnni"
            if not target.exists():
                build_model_dir(
                    target,
                    lambda d: quantize_model_dir(
                        fp32.model_dir,
                        shipped_ranges(name),
                        d,
                        name=target.name,
                        reduce_range=reduce_range_for_cpu(()),
                    ),
                )
            int8 = Classifier(target)
        else:
            int8 = Classifier.pretrained(f"{name}_int8")
        top_fp32 = list(fp32.classify(images, top_k=5))
        top_int8 = list(int8.classify(images, top_k=5))
        _ON_PHOTOS[key] = ([name for name, _ in photos], top_fp32, top_int8, int8.spec)
    return _ON_PHOTOS[key]


@pytest.fixture(scope="session")
def both_on_photos(lite0: Classifier, lite0_int8: Classifier):
    return on_photos(0)[:3]


def test_int8_model_is_built_offline_from_shipped_ranges(lite0: Classifier, lite0_int8: Classifier) -> None:
    spec = lite0_int8.spec
    assert spec.name == "efficientnet_lite0_int8"
    assert spec.extra["precision"] == "int8" and spec.extra["quantized_from"] == "efficientnet_lite0"
    assert spec.labels == lite0.spec.labels and spec.preprocess == lite0.spec.preprocess
    fp32_size = (lite0.model_dir / "model.onnx").stat().st_size
    assert (lite0_int8.model_dir / "model.onnx").stat().st_size < fp32_size / 3  # int8 weights
    ranges = shipped_ranges("efficientnet_lite0")
    assert ranges.weights_sha256 == lite0.spec.weights_sha256
    assert ranges.images >= 80


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_shipped_ranges_are_small_data(variant: int) -> None:
    ranges = shipped_ranges(f"efficientnet_lite{variant}")
    assert ranges.format_version == 3 and ranges.method == "mse-histogram"
    assert 90 <= len(ranges.ranges) <= 200
    assert all(lo <= hi for lo, hi in ranges.ranges.values())
    # the stem and the first block stay in float
    assert {"_conv_stem", "_blocks.0._depthwise_conv", "_blocks.0._project_conv"} <= set(ranges.float_nodes)
    assert len(ranges.float_nodes) <= 8
    # a channel mean for the input of every quantized convolution and the classifier, inside its range
    assert 40 <= len(ranges.channel_means) <= 70
    for name, means in ranges.channel_means.items():
        lo, hi = ranges.ranges[name]
        assert means.dtype == np.float32 and 3 <= means.size <= 2000
        assert np.all((means >= lo - 1e-2) & (means <= hi + 1e-2)), name
    text = json.dumps(ranges.to_dict())
    assert len(text) < 100_000  # under 1 % of the fp32 model
    again = ActivationRanges.from_dict(json.loads(text))
    assert all(np.array_equal(again.channel_means[k], v) for k, v in ranges.channel_means.items())


def test_the_listed_nodes_stay_float(lite0_int8: Classifier, tmp_path: Path) -> None:
    """The shipped ranges name the nodes kept in float: their weights stay float initializers, every
    other layer's weights are int8. A format-2 file (no such list, older releases) still builds, all
    in int8."""
    import onnx

    def float_layers(model_file: Path) -> set[str]:
        graph = onnx.load(str(model_file)).graph
        floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
        layers = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "QLinearConv")]
        assert len(layers) == 50
        return {n.name for n in layers if n.input[1] in floats}

    spec = lite0_int8.spec.extra["quantization"]
    expected = set(shipped_ranges("efficientnet_lite0").float_nodes) - {"pool"}
    assert set(spec["float_nodes"]) >= expected
    assert float_layers(lite0_int8.model_dir / "model.onnx") == expected
    version2 = shipped_ranges("efficientnet_lite0").to_dict() | {"format_version": 2}
    del version2["float_nodes"]
    fp32_dir = resolve_model("efficientnet_lite0")[0]
    built = quantize_model_dir(fp32_dir, ActivationRanges.from_dict(version2), tmp_path, name="v2")
    assert built.extra["quantization"]["float_nodes"] == []
    assert float_layers(tmp_path / "model.onnx") == set()


def test_a_float_node_between_quantized_ones_is_warned_about(
    lite0: Classifier, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime would quantize such a layer again, per tensor, when it loads the model (its
    WeightBiasQuantization optimization): the builder says so; the shipped float nodes (a run from the
    input) raise no warning."""
    ranges = shipped_ranges("efficientnet_lite0")
    with caplog.at_level("WARNING", logger="sparkvision.models.quantize"):
        quantize_model_dir(lite0.model_dir, ranges, tmp_path / "a", name="a")
        assert "WeightBiasQuantization" not in caplog.text
        quantize_model_dir(
            lite0.model_dir, ranges, tmp_path / "b", name="b", exclude=["_blocks.5._project_conv"]
        )
    assert "float layer '_blocks.5._project_conv'" in caplog.text


def test_int8_outputs_stay_float(lite0_int8: Classifier, examples_dir: Path) -> None:
    """The quantizer would round the logits to 8 bits (a step of 0.05, which merges near-tied labels
    and clips confident ones); they are computed in float."""
    from sparkvision.engine import get_engine

    batch = np.stack([lite0_int8.prepare(p).pixels for p in sorted(examples_dir.glob("*.jpg"))])
    logits = get_engine(lite0_int8.model_dir / "model.onnx").run(batch, ["logits"])[0]
    assert len(np.unique(logits)) > 1000  # 8-bit outputs would take at most 256 values


#: Top-1 agreement with fp32 on all 102 photos: the floor asserted, by weight range. Measured on a VNNI
#: Xeon (`python benchmarks/int8_agreement.py`, session 7: "mse" ranges), 8-bit weights: 0.951, 0.931,
#: 0.941 (Lite0/1/2); pair-limited weights (CPUs without VNNI): 0.951, 0.951, 0.990. Near-ties flip with
#: anything — a grey level in the preprocessing, the random crops of the calibration images (other
#: seeds: Lite0 8-bit 0.95-0.98 with either range method) — so the floors leave one or two photos of
#: slack. (Session 6: 8-bit 0.971, 0.912, 0.941; its 7-bit dense weights 0.922, 0.941, 0.931.)
ALL_PHOTOS_FLOOR = {"8bit": {0: 0.94, 1: 0.92, 2: 0.93}, "pairs": {0: 0.94, 1: 0.94, 2: 0.97}}
#: Photos whose int8 top label is outside fp32's top five: none (measured).
OUTSIDE_TOP5 = {"8bit": 0, "pairs": 0}
#: The largest fp32 lead a swapped photo may have: Lite2's 8-bit model swaps the centre crop of the
#: brick wall, whose fp32 lead is 0.054 (a "clear" photo by the 0.05 rule, the only one; measured).
NEAR_TIE = 0.06


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["this CPU", "no VNNI"])
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_int8_agrees_with_fp32_on_every_real_photo(
    variant: int, weights: str, lite0: Classifier, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """102 photos (17 real ones, mirrored, cropped, halved, turned), for the int8 model this CPU gets
    and for the one CPUs without VNNI get (pair-limited weights, see ``quantize.reduce_range_for_cpu``).
    Where the fp32 model's top label leads its runner-up by 0.05 or more, int8 agrees on it (>= 98 %;
    measured: all of them, 66, 66 and 69 photos, but Lite2's 8-bit model 68 of 69); on all 102 see
    ``ALL_PHOTOS_FLOOR``; int8's top label is one of fp32's top five (``OUTSIDE_TOP5``), and the top fives
    overlap by 0.94-0.95 (measured). Every swap is a near-tie (``NEAR_TIE``; most within 0.01: textures,
    microscopy, quarter turns); changing every input pixel of the fp32 model by a random ±1 grey level
    swaps more labels (docs/performance.md)."""
    names, fp32, int8, spec = on_photos(variant, weights, tmp_path_factory.getbasetemp() / "int8-no-vnni")
    scheme = "pairs" if spec.extra["quantization"].get("reduce_range") == "pairs" else "8bit"
    assert scheme == "pairs" or weights == "this CPU"
    margins = np.array([a.scores[0] - a.scores[1] for a in fp32])
    agree = np.array([a.class_ids[0] == b.class_ids[0] for a, b in zip(fp32, int8)])
    clear = margins >= 0.05
    assert clear.sum() >= 60
    assert agree[clear].mean() >= 0.98, [n for n, c, ok in zip(names, clear, agree) if c and not ok]
    assert agree.mean() >= ALL_PHOTOS_FLOOR[scheme][variant], [n for n, ok in zip(names, agree) if not ok]
    assert margins[~agree].max(initial=0) < NEAR_TIE
    outside = [n for n, a, b in zip(names, fp32, int8) if b.class_ids[0] not in a.class_ids]
    assert len(outside) <= OUTSIDE_TOP5[scheme], outside
    overlap = np.mean([len(set(a.class_ids) & set(b.class_ids)) / 5 for a, b in zip(fp32, int8)])
    assert overlap >= 0.92


@pytest.mark.slow
def test_bias_correction_brings_int8_closer_to_fp32(lite0: Classifier, tmp_path: Path) -> None:
    """The same int8 weights without the bias correction (and from a version-1 ranges file, which
    has no channel means): the probabilities move twice as far from fp32's."""
    from sparkvision.engine import get_engine

    ranges = shipped_ranges("efficientnet_lite0")
    old = {k: v for k, v in ranges.to_dict().items() if k not in ("channel_means", "float_nodes")}
    version1 = ActivationRanges.from_dict(old | {"format_version": 1})
    assert version1.float_nodes == () and not version1.channel_means
    # the same nodes in float, so that only the bias correction differs
    plain = quantize_model_dir(lite0.model_dir, version1, tmp_path, name="p", exclude=ranges.float_nodes)
    assert plain.extra["quantization"]["bias_corrected_layers"] == 0
    corrected = Classifier.pretrained("efficientnet_lite0_int8").spec.extra["quantization"]
    assert corrected["bias_corrected_layers"] == len(ranges.channel_means) == 47
    photos = photo_set()[::2]
    batch = np.stack([lite0.prepare(np.asarray(image)).pixels for _, image in photos])

    def probabilities(model_dir: Path) -> np.ndarray:
        logits = get_engine(model_dir / "model.onnx").run(batch, ["logits"])[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    fp32 = probabilities(lite0.model_dir)
    distance = {
        name: np.abs(probabilities(d) - fp32).sum(axis=1).mean()
        for name, d in [("plain", tmp_path), ("corrected", resolve_model("efficientnet_lite0_int8")[0])]
    }
    assert distance["corrected"] < 0.7 * distance["plain"], distance


@pytest.mark.slow
def test_mse_ranges_bring_int8_closer_to_fp32_than_the_extremes(lite0: Classifier, tmp_path: Path) -> None:
    """Calibrated on the five bundled photos (as they are, mirrored and cropped; one batch, so
    ``"average"`` gives each tensor's extremes), ``"mse"`` ranges lie inside the extremes, narrower for
    most tensors (they clip the rare large values to round all others finer), with the same input
    range and channel means; and the int8 model built from them follows fp32 more closely on the
    other test photos (measured: KL divergence 0.6× that of the extremes)."""
    from real_photos import EXAMPLES, variations

    calibration = [
        v
        for p in sorted(EXAMPLES.glob("*.*g"))
        for _, v in list(variations(Image.open(p).convert("RGB")))[:3]
    ]
    assert len(calibration) == 15
    ranges = {
        method: collect_ranges(
            lite0.model_dir,
            calibration,
            batch_size=32,
            float_nodes=shipped_ranges("efficientnet_lite0").float_nodes,
            method=method,
        )
        for method in ("mse", "average")
    }
    mse, extremes = ranges["mse"], ranges["average"]
    assert mse.method == "mse-histogram" and extremes.method == "minmax-moving-average"
    assert mse.ranges["pixel_values"] == extremes.ranges["pixel_values"]
    assert all(np.array_equal(mse.channel_means[k], v) for k, v in extremes.channel_means.items())
    inside = [
        extremes.ranges[k][0] <= lo <= hi <= extremes.ranges[k][1] for k, (lo, hi) in mse.ranges.items()
    ]
    assert all(inside)
    narrower = [
        hi - lo < 0.95 * (extremes.ranges[k][1] - extremes.ranges[k][0]) for k, (lo, hi) in mse.ranges.items()
    ]
    assert np.mean(narrower) > 0.5

    others = [
        image
        for name, image in photo_set()
        if not any(name.startswith(p.stem + " (") for p in EXAMPLES.glob("*"))
    ]
    batch = np.stack([lite0.prepare(np.asarray(image)).pixels for image in others[::3]])

    fp32 = probabilities(lite0.model_dir / "model.onnx", batch)
    kl = {}
    for method, r in ranges.items():
        quantize_model_dir(lite0.model_dir, r, tmp_path / method, name=method, reduce_range=False)
        kl[method] = mean_kl(fp32, probabilities(tmp_path / method / "model.onnx", batch))
    assert kl["mse"] < 0.8 * kl["average"], kl


@pytest.mark.slow
def test_int8_names_the_labelled_photos_right(both_on_photos) -> None:
    names, fp32, int8 = both_on_photos
    for stem, right in LABELLED.items():
        rows = [i for i, n in enumerate(names) if n.startswith(f"{stem} (") and "quarter turn" not in n]
        assert rows
        for i in rows:
            assert fp32[i].label in right, (names[i], fp32[i].label)
            assert int8[i].label in right, (names[i], int8[i].label)


def test_precision_picks_the_int8_variant(colour_model: Path) -> None:
    assert with_precision("efficientnet_lite0", "int8") == "efficientnet_lite0_int8"
    assert with_precision("efficientnet-lite1", "int8") == "efficientnet_lite1_int8"
    assert with_precision("efficientnet_lite2_int8", "int8") == "efficientnet_lite2_int8"
    assert with_precision("efficientnet_lite0", "fp32") == "efficientnet_lite0"
    with pytest.raises(ConfigError, match="sparkvision quantize"):
        with_precision(str(colour_model), "int8")
    with pytest.raises(ConfigError, match="precision"):
        with_precision("efficientnet_lite0", "fp16")


def test_ranges_from_other_weights_or_another_graph_are_refused(lite0: Classifier, tmp_path: Path) -> None:
    ranges = shipped_ranges("efficientnet_lite0")
    other = ActivationRanges("efficientnet_lite0", "0" * 64, ranges.ranges, ranges.images)
    with pytest.raises(ModelFormatError, match="other weights"):
        quantize_model_dir(lite0.model_dir, other, tmp_path / "a", name="x")
    lite1 = shipped_ranges("efficientnet_lite1")
    wrong_graph = ActivationRanges("efficientnet_lite0", None, dict(list(lite1.ranges.items())[:10]), 1)
    with pytest.raises(ModelFormatError, match="do not match"):
        quantize_model_dir(lite0.model_dir, wrong_graph, tmp_path / "b", name="x")


def _colour_photos(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, colour in enumerate([(220, 30, 30), (30, 200, 40), (20, 40, 230)] * 3):
        noise = rng.integers(-20, 20, (40, 50, 3))
        Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_quantize_any_model_from_a_folder_of_photos(colour_model: Path, tmp_path: Path) -> None:
    """Imported models too: calibrate on the user's photos, save under a new name, classify alike."""
    photos = _colour_photos(tmp_path / "photos")
    path, spec = quantize(colour_model, photos, name="tiny_colour_q", replace=True)
    assert spec.name == "tiny_colour_q" and spec.extra["precision"] == "int8"
    assert (path / "int8_ranges.json").is_file()
    assert ActivationRanges.load(path / "int8_ranges.json").images == 9
    q = Classifier.pretrained("tiny_colour_q")
    fp = Classifier(colour_model)
    images = [
        np.full((20, 20, 3), c, np.uint8) for c in [(240, 20, 20), (10, 230, 10), (0, 0, 250), (200, 90, 60)]
    ]
    fp_labels = [p.label for p in fp.classify(images)]
    assert [p.label for p in q.classify(images)] == fp_labels == ["red", "green", "blue", "red"]
    with pytest.raises(ConfigError, match="already exists"):
        quantize(colour_model, photos, name="tiny_colour_q")
    with pytest.raises(ConfigError, match="already an int8 model"):
        quantize(resolve_model("tiny_colour_q")[0], photos, name="twice")


def test_cli_quantize_precision_and_models_list(colour_model: Path, tmp_path: Path, lite0_int8) -> None:
    runner = CliRunner()
    photos = _colour_photos(tmp_path / "photos")
    made = runner.invoke(
        cli, ["quantize", str(colour_model), "--calibration", str(photos), "--name", "tc_int8", "--force"]
    )
    assert made.exit_code == 0, made.output
    assert "calibrated on 9 images" in made.output
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    names = {row["name"] for row in listed}
    assert {
        "efficientnet_lite0_int8",
        "efficientnet_lite1_int8",
        "efficientnet_lite2_int8",
        "tc_int8",
    } <= names
    red = tmp_path / "red.png"
    Image.new("RGB", (30, 30), (250, 0, 0)).save(red)
    out = runner.invoke(cli, ["classify", str(red), "--model", "tc_int8", "-f", "jsonl", "-q"])
    assert out.exit_code == 0 and json.loads(out.output)["labels"][0] == "red"
    missing = runner.invoke(cli, ["classify", str(red), "--model", str(colour_model), "--precision", "int8"])
    assert missing.exit_code == 2 and "sparkvision quantize" in missing.output


def test_cli_quantize_keeps_named_layers_in_float(colour_model: Path, tmp_path: Path) -> None:
    """--keep-float NODE leaves that layer's weights in float; a wrong name is a clean error that
    names the model's layers, so a user can find the right one."""

    runner = CliRunner()
    photos = _colour_photos(tmp_path / "photos")
    args = ["quantize", str(colour_model), "--calibration", str(photos), "--force"]
    kept = runner.invoke(cli, [*args, "--name", "tc_float_head", "--keep-float", "sparkvision_node_2"])
    assert kept.exit_code == 0, kept.output
    assert "1 nodes kept in float" in kept.output
    assert _matmuls_with_float_weights("tc_float_head") == 1
    quantized = runner.invoke(cli, [*args, "--name", "tc_all_int8"])
    assert quantized.exit_code == 0 and "kept in float" not in quantized.output
    assert _matmuls_with_float_weights("tc_all_int8") == 0

    wrong = runner.invoke(cli, [*args, "--name", "tc_wrong", "--keep-float", "conv_stem"])
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output
    assert "no node named 'conv_stem'" in wrong.output and "sparkvision_node_2" in wrong.output


def _matmuls_with_float_weights(model: str) -> int:
    """How many MatMul nodes of a cached model multiply by a float weight initializer directly."""
    import onnx

    graph = onnx.load(str(resolve_model(model)[0] / "model.onnx")).graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return sum(1 for n in graph.node if n.op_type == "MatMul" and floats.intersection(n.input))


def test_recalibrating_a_catalogue_model_keeps_its_float_stem_by_default() -> None:
    from sparkvision.models.quantize import default_float_nodes

    for model in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert default_float_nodes(model) == shipped_ranges(model).float_nodes != ()
    assert default_float_nodes("my_imported_model") == ()


def test_building_int8_without_the_int8_extra(
    monkeypatch: pytest.MonkeyPatch, colour_model: Path, tmp_path: Path
) -> None:
    """onnx (ONNX Runtime's quantization tools need it) comes with the 'int8' extra; without it,
    building says so in one line. Running an int8 model needs only onnxruntime."""
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    photos = _colour_photos(tmp_path / "photos")
    result = CliRunner().invoke(cli, ["quantize", str(colour_model), "--calibration", str(photos)])
    assert result.exit_code == 2
    assert "pip install 'sparkvision[int8]'" in result.output and "Traceback" not in result.output


def test_an_int8_model_built_from_older_ranges_is_built_again(
    lite0_int8: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade that ships better ranges must not leave users on the int8 model the old ones made."""
    from sparkvision.models.quantize import RANGES_FILE, ActivationRanges

    directory = lite0_int8.model_dir
    model_file = directory / "model.onnx"
    resolve_model("efficientnet_lite0_int8")  # current: used as it is
    assert "older sparkvision" not in caplog.text
    built_at = model_file.stat().st_mtime_ns

    older = ActivationRanges.load(directory / RANGES_FILE).to_dict()
    tensor = sorted(older["ranges"])[0]
    older["ranges"][tensor] = [v * 0.5 for v in older["ranges"][tensor]]
    ActivationRanges.from_dict(older).save(directory / RANGES_FILE)

    with caplog.at_level("WARNING", logger="sparkvision.models.catalogue"):
        path, spec = resolve_model("efficientnet_lite0_int8")
    assert path == directory and spec.name == "efficientnet_lite0_int8"
    assert "efficientnet_lite0_int8 was built by an older sparkvision" in caplog.text
    assert model_file.stat().st_mtime_ns != built_at  # quantized again …
    current = ActivationRanges.load(directory / RANGES_FILE).to_dict()
    assert current == shipped_ranges("efficientnet_lite0").to_dict()  # … from the shipped ranges
