"""The core classifier on the real EfficientNet-Lite0 model and real photos."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from sparkvision import Classifier, ConfigError, InputNotFoundError
from sparkvision.labels import imagenet1k_synsets

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_real_photos_get_the_right_classes(lite0: Classifier, examples_dir: Path) -> None:
    by_name = {Path(p.path).name: p for p in lite0.classify(examples_dir, top_k=5)}
    assert set(by_name) == {"astronaut.jpg", "camera.png", "chelsea.jpg", "coffee.jpg", "rocket.jpg"}
    assert by_name["chelsea.jpg"].class_ids[0] in CAT_CLASSES
    assert by_name["coffee.jpg"].class_ids[0] == ESPRESSO
    assert by_name["coffee.jpg"].labels[0] == "espresso"
    for prediction in by_name.values():
        assert prediction.ok and len(prediction.labels) == 5
        assert list(prediction.scores) == sorted(prediction.scores, reverse=True)
        assert 0 < sum(prediction.scores) <= 1.0 + 1e-6


def test_skimage_arrays_bytes_and_pil_agree(lite0: Classifier) -> None:
    chelsea = skdata.chelsea()
    sources = [chelsea, Image.fromarray(chelsea), _jpeg(skdata.coffee(), quality=95)]
    first, second, third = lite0.classify(sources, top_k=3)
    assert first.path is None and first.class_ids == second.class_ids
    np.testing.assert_allclose(first.scores, second.scores, atol=1e-6)
    assert first.class_ids[0] in CAT_CLASSES
    assert third.class_ids[0] == ESPRESSO
    assert (first.width, first.height) == (451, 300)


@pytest.mark.parametrize(
    "mode",
    [{"threads": 1}, {"threads": 2}, {"threads": 3}, {"decode_workers": 2}, {"decode_workers": 0}],
    ids=["1-lane", "2-lanes", "3-lanes", "pipelined", "inline"],
)
def test_bad_files_keep_their_rows_and_never_shift_results(
    lite0: Classifier, tmp_path: Path, mode: dict[str, int]
) -> None:
    lite0 = Classifier(lite0.model_dir, lite0.spec, **mode)
    good_cat = tmp_path / "a_cat.jpg"
    good_cat.write_bytes(_jpeg(skdata.chelsea()))
    truncated = tmp_path / "b_truncated.jpg"
    truncated.write_bytes(_jpeg(skdata.astronaut())[:3000])
    empty = tmp_path / "c_empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "d_text.jpg"
    text.write_text("this is not an image")
    good_coffee = tmp_path / "e_coffee.jpg"
    good_coffee.write_bytes(_jpeg(skdata.coffee()))
    missing = tmp_path / "f_missing.jpg"

    inputs = [good_cat, truncated, empty, text, good_coffee, missing, good_cat]
    for batch_size in (1, 2, 16):
        rows = list(lite0.classify(inputs, top_k=2, batch_size=batch_size))
        assert [r.path for r in rows] == [str(p) for p in inputs]
        assert [r.index for r in rows] == list(range(len(inputs)))
        assert [r.ok for r in rows] == [True, False, False, False, True, False, True]
        assert rows[0].class_ids[0] in CAT_CLASSES and rows[6].class_ids == rows[0].class_ids
        assert rows[4].class_ids[0] == ESPRESSO
        for bad in (rows[1], rows[2], rows[3], rows[5]):
            assert bad.labels == () and bad.scores == () and bad.error
        assert "trunc" in rows[1].error.lower()
        assert "empty" in rows[2].error.lower() or "0 bytes" in rows[2].error
        assert "exist" in rows[5].error.lower() or "not found" in rows[5].error.lower()


def test_batching_does_not_change_scores(lite0: Classifier, examples_dir: Path) -> None:
    one = list(lite0.classify(examples_dir, top_k=5, batch_size=1))
    many = list(lite0.classify(examples_dir, top_k=5, batch_size=4))
    sequential = Classifier(lite0.model_dir, lite0.spec, decode_workers=0)
    seq = list(sequential.classify(examples_dir, top_k=5, batch_size=16))
    for a, b, c in zip(one, many, seq):
        assert a.path == b.path == c.path
        assert a.class_ids == b.class_ids == c.class_ids
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.scores, c.scores, atol=1e-5)


def test_null_entries_in_a_batch(lite0: Classifier) -> None:
    rows = lite0.classify_batch([None, skdata.chelsea(), b"garbage"], top_k=1)
    assert [r.ok for r in rows] == [False, True, False]
    assert "null" in rows[0].error


def test_top_k_limits(lite0: Classifier, examples_dir: Path) -> None:
    for bad in (0, -1, 1001, 2.5, True):
        with pytest.raises(ConfigError, match="top_k must be between 1 and 1000"):
            list(lite0.classify(examples_dir, top_k=bad))
    (full,) = lite0.classify(examples_dir / "coffee.jpg", top_k=1000)
    assert len(full.labels) == 1000 and sorted(full.class_ids) == list(range(1000))
    assert sum(full.scores) == pytest.approx(1.0, abs=1e-4)


def test_threshold_drops_low_scores(lite0: Classifier, examples_dir: Path) -> None:
    (p,) = lite0.classify(examples_dir / "coffee.jpg", top_k=5, threshold=0.5)
    assert p.labels == ("espresso",) and p.scores[0] >= 0.5


def test_embeddings(lite0: Classifier, examples_dir: Path) -> None:
    rows = list(lite0.embed(examples_dir))
    assert all(r.embedding is not None and r.embedding.shape == (1280,) for r in rows)
    assert not np.allclose(rows[0].embedding, rows[1].embedding)
    assert "embedding" in rows[0].to_dict()


def test_missing_single_path_and_bad_inputs(lite0: Classifier, tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        list(lite0.classify(tmp_path / "nope"))
    with pytest.raises(InputNotFoundError, match="no image files"):
        list(lite0.classify(tmp_path))
    with pytest.raises(ConfigError, match="cannot read images from a int"):
        list(lite0.classify(42))


def test_synsets_and_labels_travel_with_the_model(lite0: Classifier) -> None:
    spec = lite0.spec
    assert spec.synsets == imagenet1k_synsets()
    assert spec.labels[344] == "hippopotamus, hippo, river horse, Hippopotamus amphibius"
    assert spec.preprocess.size == 224 and spec.preprocess.interpolation == "bicubic"
    assert spec.license == "Apache-2.0" and spec.weights_sha256 and len(spec.weights_sha256) == 64


def test_to_dict_is_the_json_record(lite0: Classifier, examples_dir: Path) -> None:
    (p,) = lite0.classify(examples_dir / "coffee.jpg", top_k=2)
    record = p.to_dict()
    assert list(record) == ["path", "labels", "scores", "class_ids", "error"]
    assert record["error"] is None and record["class_ids"][0] == ESPRESSO


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_bigger_variants(name: str, examples_dir: Path) -> None:
    clf = Classifier.pretrained(name)
    by_name = {Path(p.path).name: p for p in clf.classify(examples_dir, top_k=5)}
    assert by_name["coffee.jpg"].class_ids[0] == ESPRESSO
    assert set(by_name["chelsea.jpg"].class_ids[:2]) & CAT_CLASSES


def test_small_models_default_to_all_their_classes(colour_model: Path, tmp_path: Path) -> None:
    clf = Classifier(colour_model)
    red, blue = clf.classify(
        [np.full((20, 30, 3), (250, 10, 10), np.uint8), np.full((9, 9, 3), (0, 0, 200), np.uint8)]
    )
    assert len(red.labels) == len(blue.labels) == 3  # default 5, lowered to the model's 3 classes
    assert red.label == "red" and blue.label == "blue"
    with pytest.raises(ConfigError, match="between 1 and 3"):
        list(clf.classify(tmp_path, top_k=5))


def test_crop_window_whenever_the_spec_crops(tmp_path) -> None:
    from sparkvision.images import decode_image
    from sparkvision.preprocess import PreprocessSpec
    from sparkvision.tasks.base import crop_window_resize, draft_short_side

    spec = Classifier.pretrained().spec.preprocess  # short side 256, centre crop 224
    photo = Image.fromarray(skdata.chelsea())  # 451×300
    assert crop_window_resize(decode_image(photo), spec)
    big = photo.resize(
        (2400, 1596), Image.Resampling.BICUBIC
    )  # halved: 798 >= 2 × 256 (a quarter, 399, would be below)
    big.save(tmp_path / "big.jpg", quality=90)
    drafted = decode_image(tmp_path / "big.jpg", min_short_side=draft_short_side(spec))
    assert drafted.reduced and drafted.image.size == (1200, 798)
    assert crop_window_resize(drafted, spec)
    # nothing to crop: squashed straight to the input size, or already that size without resizing
    assert not crop_window_resize(decode_image(photo), PreprocessSpec(size=224, resize="squash"))
    square = decode_image(photo.resize((224, 224)))
    assert not crop_window_resize(square, PreprocessSpec(size=224, do_resize=False))


def test_prepared_images_classify_as_their_sources(lite0: Classifier, examples_dir: Path) -> None:
    """A front may decode and preprocess in its own threads (``prepare``) and batch later: the
    result is the same as classifying the source itself, bit for bit."""
    photos = [examples_dir / "chelsea.jpg", examples_dir / "coffee.jpg"]
    sources = [p.read_bytes() for p in photos]
    prepared = [lite0.prepare(s) for s in sources]
    assert prepared[0].pixels.shape == (3, 224, 224) and prepared[0].pixels.dtype == np.float32
    assert (prepared[0].width, prepared[0].height) == Image.open(photos[0]).size
    direct = lite0.classify_batch(sources)
    via_prepared = lite0.classify_batch(prepared)
    assert [p.class_ids for p in via_prepared] == [p.class_ids for p in direct]
    assert [p.scores for p in via_prepared] == [p.scores for p in direct]
    [single] = lite0.classify(prepared[1])  # a single prepared image too
    assert single.label == "espresso"


def test_prepare_refuses_bad_images_and_other_models_inputs(lite0: Classifier, tmp_path: Path) -> None:
    from sparkvision import ImageDecodeError
    from sparkvision.results import PreparedImage

    with pytest.raises(ImageDecodeError):
        lite0.prepare(b"not an image")
    big = _jpeg(np.zeros((300, 400, 3), dtype=np.uint8))
    with pytest.raises(ImageDecodeError, match="pixels"):
        lite0.prepare(big, max_pixels=100_000)
    assert lite0.prepare(big).width == 400  # the override applied to that call only
    other = dataclasses.replace(lite0.spec.preprocess, size=240)  # efficientnet_lite1's input size
    foreign = PreparedImage(np.zeros((3, 240, 240), np.float32), 240, 240, other)
    [row] = lite0.classify_batch([foreign])
    assert row.error and "another model" in row.error and not row.labels


def test_lanes_for_streams_and_all_threads_for_one_batch(lite0: Classifier, examples_dir: Path) -> None:
    """A stream runs one batch per core (lanes); an in-memory batch that fits in one batch runs on
    every core at once (the web service's latency); ``decode_workers`` asks for the pipelined mode.
    Every mode gives the same predictions."""
    from sparkvision.scheduling import lane_count
    from sparkvision.sources import InMemorySources

    assert lane_count(examples_dir, 16, threads=4, decode_workers=None) == 4
    assert lane_count(InMemorySources([b""] * 16), 16, threads=4, decode_workers=None) == 0
    assert lane_count(InMemorySources([b""] * 17), 16, threads=4, decode_workers=None) == 4
    assert lane_count(InMemorySources(iter([b""])), 16, threads=4, decode_workers=None) == 4  # unknown length
    assert lane_count(examples_dir, 16, threads=4, decode_workers=2) == 0
    assert lane_count(examples_dir, 16, threads=1, decode_workers=None) == 1

    lanes = list(Classifier(lite0.model_dir, lite0.spec, threads=2).classify(examples_dir, batch_size=2))
    pipelined = list(
        Classifier(lite0.model_dir, lite0.spec, decode_workers=2).classify(examples_dir, batch_size=2)
    )
    assert [p.path for p in lanes] == [p.path for p in pipelined]
    assert [p.class_ids for p in lanes] == [p.class_ids for p in pipelined]
    for a, b in zip(lanes, pipelined):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)  # one-thread vs two-thread kernels


def test_lanes_load_each_batch_into_one_reused_buffer_without_changing_a_score(
    lite0: Classifier, examples_dir: Path, tmp_path: Path
) -> None:
    """A lane writes its batch into rows of a buffer it reuses from batch to batch, and the engine
    reads those rows in place. Every photo must still get exactly the scores it gets classified on
    its own, also after a bad file leaves a gap in the rows and when a later, shorter batch reuses
    the buffer."""
    photos = sorted(p for p in examples_dir.iterdir() if p.suffix in {".jpg", ".png"})
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    inputs = [*photos, bad, *photos[::-1], photos[0]]
    alone = {p: lite0.classify_batch([p.read_bytes()], top_k=3)[0] for p in photos}
    lanes = Classifier(lite0.model_dir, lite0.spec, threads=2)
    for batch_size in (2, 3, 16):
        rows = list(lanes.classify(inputs, top_k=3, batch_size=batch_size))
        assert [r.path for r in rows] == [str(p) for p in inputs]
        for path, row in zip(inputs, rows):
            if path == bad:
                assert row.error and not row.labels
            else:
                assert (row.class_ids, row.scores) == (alone[path].class_ids, alone[path].scores), path


def test_prepare_writes_into_a_given_row(lite0: Classifier, examples_dir: Path) -> None:
    batch = np.zeros((2, 3, 224, 224), dtype=np.float32)
    prepared = lite0.prepare(examples_dir / "coffee.jpg", out=batch[1])
    assert np.shares_memory(prepared.pixels, batch) and batch[0].max() == 0
    np.testing.assert_array_equal(batch[1], lite0.prepare(examples_dir / "coffee.jpg").pixels)
    again = lite0.prepare(prepared, out=batch[0])  # a prepared image is copied into the row
    np.testing.assert_array_equal(batch[0], batch[1])
    assert np.shares_memory(again.pixels, batch[0])
