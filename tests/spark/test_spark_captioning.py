"""``VisionEncoderDecoderForImageCaptioning`` in the shape of Spark NLP's own captioning test (pipeline
ImageAssembler → captioner, transform, LightPipeline on one image and on a list), on a tiny random
ViT + GPT-2 checkpoint loaded with ``loadSavedModel``.

Every caption is compared with :meth:`Captioner.caption` on the same pixels (the parity tests in
tests/captioning tie that to transformers' ``generate()``): Spark's image source through the rows'
own pixels, binaryFile input and LightPipeline through the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import Pipeline, PipelineModel

from sparkvision.annotator import VisionEncoderDecoderForImageCaptioning
from sparkvision.base import ImageAssembler, LightPipeline, read_images
from sparkvision.errors import ConfigError, ModelNotFoundError
from sparkvision.images import decode_bgr_struct
from sparkvision.tasks.captioning import Captioner

pytestmark = [pytest.mark.spark, pytest.mark.slow]

pytest.importorskip("transformers")


def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def captioning(caption_checkpoint: Path, spark: Any) -> VisionEncoderDecoderForImageCaptioning:
    """Spark NLP's test's stage: loadSavedModel of a Hugging Face checkpoint, beam 2, no sampling."""
    return (
        VisionEncoderDecoderForImageCaptioning.loadSavedModel(str(caption_checkpoint), spark)
        .setInputCols("image_assembler")
        .setOutputCol("caption")
        .setBeamSize(2)
        .setDoSample(False)
    )


@pytest.fixture(scope="module")
def model(captioning: VisionEncoderDecoderForImageCaptioning, spark: Any, image_dirs: dict) -> PipelineModel:
    data = spark.read.format("image").load(str(image_dirs["good"]))
    assembler = ImageAssembler().setInputCol("image").setOutputCol("image_assembler")
    return Pipeline(stages=[assembler, captioning]).fit(data)


def _core(stage: VisionEncoderDecoderForImageCaptioning) -> Captioner:
    return Captioner(stage.getModelPath())


def test_generation_setters_refuse_what_generate_refuses() -> None:
    # Names and defaults are checked against Spark NLP's in test_sparknlp_api.py.
    stage = VisionEncoderDecoderForImageCaptioning()
    with pytest.raises(ConfigError, match="topP"):
        stage.setTopP(1.5)
    with pytest.raises(ConfigError, match="beamSize"):
        stage.setBeamSize(0)
    with pytest.raises(ConfigError, match="temperature"):
        stage.setTemperature(0)
    with pytest.raises(ConfigError, match="no model"):
        stage._model_dir()


def test_params_reach_the_core_as_generate_options(
    captioning: VisionEncoderDecoderForImageCaptioning,
) -> None:
    stage = captioning.copy().setMaxOutputLength(12).setNoRepeatNgramSize(2).setRepetitionPenalty(1.3)
    stage.setTopK(7).setTopP(0.9).setTemperature(0.7).setNReturnSequences(2).setSeed(5)
    assert stage.generationOptions() == {
        "max_length": 12,
        "min_length": 0,
        "do_sample": False,
        "top_k": 7,
        "top_p": 0.9,
        "temperature": 0.7,
        "num_beams": 2,
        "repetition_penalty": 1.3,
        "no_repeat_ngram_size": 2,
        "num_return_sequences": 2,
        "seed": 5,
    }
    # A combination generate() refuses is refused on the driver, before any job runs.
    with pytest.raises(ConfigError, match="num_return_sequences"):
        stage.copy().setNReturnSequences(3)._job("")
    # loadSavedModel set the preprocessing from the checkpoint's processor.
    assert (stage.getSize(), stage.getImageMean(), stage.getResample()) == (224, [0.5, 0.5, 0.5], 2)


def test_transform_image_source_matches_the_core_on_the_same_pixels(
    model: PipelineModel, spark: Any, image_dirs: dict, captioning: VisionEncoderDecoderForImageCaptioning
) -> None:
    data = spark.read.format("image").load(str(image_dirs["good"]))
    rows = model.transform(data).select("image", "caption").collect()
    assert len(rows) == 4
    pixels = [
        decode_bgr_struct(r.image.height, r.image.width, r.image.nChannels, r.image.mode, bytes(r.image.data))
        for r in rows
    ]
    expected = list(_core(captioning).caption_sources(pixels, **captioning.generationOptions()))
    greedy = _core(captioning).caption_sources(pixels, **{**captioning.generationOptions(), "num_beams": 1})
    # The comparison can tell: beam 2 is not greedy here, and the photos get different captions.
    assert [c.caption for c in expected] != [c.caption for c in greedy]
    assert len({c.caption for c in expected}) > 1
    for row, want in zip(rows, expected):
        [annotation] = row.caption
        assert want.ok and len(want.caption) > 0
        assert annotation.annotatorType == "document"
        assert annotation.result == want.caption
        assert (annotation.begin, annotation.end) == (0, len(want.caption) - 1)
        assert annotation.metadata["origin"] == row.image.origin
        assert annotation.metadata["caption_1"] == want.caption
        assert annotation.metadata["n_captions"] == "1"
        assert annotation.embeddings == []
    # Spark NLP's annotation schema, nullability included.
    field = model.transform(data).schema["caption"]
    assert field.metadata == {"annotatorType": "document"}
    element = field.dataType.elementType
    assert [f.name for f in element.fields] == [
        "annotatorType",
        "begin",
        "end",
        "result",
        "metadata",
        "embeddings",
    ]
    assert not element["begin"].nullable and not element["end"].nullable


def test_binary_files_greedy_match_the_core_and_a_corrupt_file_stays_an_error_row(
    captioning: VisionEncoderDecoderForImageCaptioning, spark: Any, image_dirs: dict
) -> None:
    stage = captioning.copy().setBeamSize(1).setNReturnSequences(1)
    files = read_images(spark, str(image_dirs["mixed"]))
    assembler = ImageAssembler().setInputCol("content").setOutputCol("image_assembler")
    rows = Pipeline(stages=[assembler, stage]).fit(files).transform(files).select("path", "caption").collect()
    got = {_name(r.path): r.caption[0] for r in rows}
    paths = sorted(Path(image_dirs["mixed"]).iterdir())
    expected = {
        p.name: c
        for p, c in zip(paths, _core(stage).caption([str(p) for p in paths], **stage.generationOptions()))
    }
    assert len(got) == 6 and set(got) <= set(expected)  # binaryFile skips the empty file
    for name, annotation in got.items():
        want = expected[name]
        if want.ok:
            assert annotation.result == want.caption and "error" not in annotation.metadata, name
        else:
            assert annotation.result == "" and annotation.end == -1
            assert annotation.metadata["error"], name
    assert {n for n, a in got.items() if "error" in a.metadata} == {"e_corrupt.jpg", "g_truncated.jpg"}


def test_light_pipeline_one_image_and_a_list(
    model: PipelineModel, image_dirs: dict, captioning: VisionEncoderDecoderForImageCaptioning
) -> None:
    light = LightPipeline(model)
    one = str(image_dirs["good_files"][1])
    [result] = light.fullAnnotateImage(one)
    assert len(result["image_assembler"]) > 0 and len(result["caption"]) > 0
    want = _core(captioning).caption_one(one, **captioning.generationOptions())
    assert result["caption"][0].result == want.caption
    images = [str(p) for p in image_dirs["good_files"][:2]] + [str(image_dirs["corrupt"])]
    results = light.fullAnnotateImage(images)
    assert len(results) == len(images)
    expected = list(_core(captioning).caption(images, **captioning.generationOptions()))
    assert [r["caption"][0].result for r in results] == [e.caption or "" for e in expected]
    assert "error" in results[2]["caption"][0].metadata
    assert light.annotate(one)["caption"] == [want.caption]


def test_several_returned_sequences_are_in_the_metadata(
    captioning: VisionEncoderDecoderForImageCaptioning, image_dirs: dict, spark: Any
) -> None:
    stage = captioning.copy().setBeamSize(3).setNReturnSequences(3)
    model = Pipeline(stages=[ImageAssembler().setInputCol("image").setOutputCol("image_assembler"), stage])
    one = str(image_dirs["good_files"][0])
    [result] = LightPipeline(model.fit(spark.read.format("image").load(one))).fullAnnotateImage(one)
    want = _core(stage).caption_one(one, **stage.generationOptions())
    meta = result["caption"][0].metadata
    assert meta["n_captions"] == "3"
    assert [meta[f"caption_{i}"] for i in (1, 2, 3)] == list(want.captions)
    assert result["caption"][0].result == want.captions[0]


def test_save_load_round_trip(model: PipelineModel, spark: Any, image_dirs: dict, tmp_path: Path) -> None:
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    stage = loaded.stages[1]
    assert isinstance(stage, VisionEncoderDecoderForImageCaptioning)
    assert (stage.getBeamSize(), stage.getDoSample(), stage.getOutputCol()) == (2, False, "caption")
    data = spark.read.format("image").load(str(image_dirs["good"]))
    before = sorted((r.image.origin, r.caption[0].result) for r in model.transform(data).collect())
    after = sorted((r.image.origin, r.caption[0].result) for r in loaded.transform(data).collect())
    assert after == before


def test_pretrained_default_name_offline_says_how_to_load_a_local_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="nlpconnect/vit-gpt2-image-captioning") as info:
        VisionEncoderDecoderForImageCaptioning.pretrained()
    assert "loadSavedModel(folder, spark)" in str(info.value)
    with pytest.raises(ConfigError, match="lang"):
        VisionEncoderDecoderForImageCaptioning.pretrained(lang="de")


def test_a_classifier_model_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="captioning model"):
        VisionEncoderDecoderForImageCaptioning.loadSavedModel(str(tiny_model))


def test_sampling_with_a_seed_repeats_and_follows_the_core(
    model: PipelineModel, image_dirs: dict, captioning: VisionEncoderDecoderForImageCaptioning
) -> None:
    images = [str(p) for p in image_dirs["good_files"]]
    stage = model.stages[1].copy().setDoSample(True).setBeamSize(1)
    sampling = PipelineModel([model.stages[0], stage])
    sampled = {}
    for seed in (3, 4):
        stage.setSeed(seed)
        sampled[seed] = [r["caption"][0].result for r in LightPipeline(sampling).fullAnnotateImage(images)]
        want = _core(stage).caption(images, **stage.generationOptions())
        assert sampled[seed] == [c.caption for c in want]
    assert sampled[3] != sampled[4]
    stage.setSeed(3)
    assert [r["caption"][0].result for r in LightPipeline(sampling).fullAnnotateImage(images)] == sampled[3]


def test_pretrained_finds_a_checkpoint_loadsavedmodel_imported(
    captioning: VisionEncoderDecoderForImageCaptioning, caption_checkpoint: Path
) -> None:
    stage = VisionEncoderDecoderForImageCaptioning.pretrained(caption_checkpoint.name)
    assert Path(stage.getModelPath()).resolve() == Path(captioning.getModelPath()).resolve()
    assert stage.getDoSample() is True  # Spark NLP's default, not the checkpoint's generation config


def test_load_saved_model_takes_spark_nlps_export_folder_unchanged(
    caption_checkpoint: Path, captioning: VisionEncoderDecoderForImageCaptioning, image_dirs: dict, spark: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    """The folder Spark NLP's captioning notebook writes (optimum's graphs + assets/) captions like the
    checkpoint it came from."""
    pytest.importorskip("torch")
    from sparknlp_export_helpers import write_sparknlp_export

    folder = write_sparknlp_export(caption_checkpoint, tmp_path_factory.mktemp("snlp") / "export")
    stage = (
        VisionEncoderDecoderForImageCaptioning.loadSavedModel(str(folder), spark)
        .setInputCols("image_assembler")
        .setOutputCol("caption")
        .setBeamSize(2)
        .setDoSample(False)
    )
    assert (stage.getSize(), stage.getImageMean()) == (224, [0.5, 0.5, 0.5])
    images = [str(p) for p in image_dirs["good_files"][:2]]
    model = Pipeline(stages=[ImageAssembler().setInputCol("image").setOutputCol("image_assembler"), stage])
    results = LightPipeline(model.fit(spark.read.format("image").load(images[0]))).fullAnnotateImage(images)
    expected = list(_core(captioning).caption(images, **captioning.generationOptions()))
    assert [r["caption"][0].result for r in results] == [e.caption for e in expected]
    assert all(e.caption for e in expected)
