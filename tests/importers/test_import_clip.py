"""CLIP zero-shot: a tiny random CLIP with a real byte-level BPE tokenizer, imported and compared with
transformers' ``CLIPModel`` probabilities on real photos."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from click.testing import CliRunner  # noqa: E402
from import_helpers import PHOTOS, hf_processor, photos_rgb  # noqa: E402

import sparkvision  # noqa: E402
from sparkvision.cli import cli  # noqa: E402
from sparkvision.errors import ConfigError, MissingExtraError  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.models.store import load_model_dir  # noqa: E402
from sparkvision.tasks import zero_shot  # noqa: E402

pytestmark = pytest.mark.slow

LABELS = ["cat", "dog", "rocket", "cup of coffee", "astronaut"]
PRE_CLIP = {"feature_extractor_type": "CLIPFeatureExtractor", "crop_size": 224, "do_center_crop": True,
            "do_normalize": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}  # openai/clip-vit-base-patch32  # fmt: skip


def _tokenizer() -> Any:
    """CLIP's tokenizer structure (byte-level BPE, ``</w>`` word ends, BOS/EOS) with a tiny vocabulary."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    merges = [("a", "t</w>"), ("c", "at</w>"), ("d", "o"), ("do", "g</w>"), ("p", "h"), ("ph", "o"),
              ("t", "o</w>"), ("pho", "to</w>"), ("o", "f</w>")]  # fmt: skip
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges)


def _clip_checkpoint(directory: Path, legacy_eos: bool = False) -> tuple[Path, Any, Any]:
    tokenizer = _tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": 2 if legacy_eos else tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 224, "patch_size": 32}  # fmt: skip
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    model = transformers.CLIPModel(config).eval()
    model.logit_scale.data.fill_(math.log(100.0))  # the trained CLIP's scale, so scores are not flat
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(__import__("json").dumps(PRE_CLIP))
    return directory, model, tokenizer


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    return _clip_checkpoint(tmp_path_factory.mktemp("clip") / "checkpoint")


@pytest.fixture(scope="module")
def clip_dir(clip_checkpoint: tuple[Path, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_model(clip_checkpoint[0], "tiny_clip", output_dir=tmp_path_factory.mktemp("m") / "clip")


def _hf_probabilities(clip_checkpoint: tuple[Path, Any, Any], labels: list[str]) -> np.ndarray:
    directory, model, tokenizer = clip_checkpoint
    prompts = [f"a photo of a {label}" for label in labels]
    text = tokenizer(prompts, padding=True, return_tensors="pt")
    pixels = hf_processor(directory)(images=photos_rgb(), return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], **pixels)
    return out.logits_per_image.softmax(dim=1).numpy()


def test_import_writes_a_zero_shot_model(clip_dir: Path) -> None:
    spec = load_model_dir(clip_dir)
    assert spec.task == "zero-shot" and spec.family == "clip" and spec.labels == ()
    assert {"model.onnx", "text_model.onnx", "tokenizer.json", "sparkvision.json"} <= {
        p.name for p in clip_dir.iterdir()
    }
    assert spec.extra["prompt_template"] == "a photo of a {}"
    assert spec.extra["logit_scale"] == pytest.approx(100.0, rel=1e-5)
    assert (spec.preprocess.size, spec.preprocess.resize, spec.preprocess.crop_pct) == (224, "crop", 1.0)
    assert spec.preprocess.interpolation == "bicubic"


def test_our_tokenization_equals_transformers(clip_dir: Path, clip_checkpoint: tuple[Path, Any, Any]) -> None:
    prompts = zero_shot.prompts_for([*LABELS, "Hot-Air  BALLOON!"])
    ours = zero_shot.tokenize(clip_dir, load_model_dir(clip_dir), prompts)
    theirs = clip_checkpoint[2](prompts, padding="max_length", max_length=77)["input_ids"]
    assert ours.shape == (len(prompts), 77)
    assert ours.tolist() == theirs


def test_zero_shot_scores_equal_clipmodel_probabilities(
    clip_dir: Path, clip_checkpoint: tuple[Path, Any, Any]
) -> None:
    expected = _hf_probabilities(clip_checkpoint, LABELS)
    assert expected.max() - expected.min() > 0.2  # scores that can tell a wrong answer from a right one
    predictions = list(
        sparkvision.load(clip_dir).classify(
            [str(p) for p in PHOTOS], candidate_labels=LABELS, top_k=len(LABELS)
        )
    )
    for prediction, row in zip(predictions, expected):
        assert prediction.error is None
        order = list(np.argsort(-row, kind="stable"))
        assert list(prediction.class_ids) == order
        assert list(prediction.labels) == [LABELS[i] for i in order]
        assert np.abs(np.array(prediction.scores) - row[order]).max() <= 1e-4
        assert sum(prediction.scores) == pytest.approx(1.0, abs=1e-5)


def test_text_embeddings_are_computed_once_per_label_set(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_model_dir(clip_dir)
    zero_shot.clear_text_cache()
    calls: list[int] = []
    real = zero_shot.tokenize

    def counting(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(zero_shot, "tokenize", counting)
    first = zero_shot.text_embeddings(clip_dir, spec, LABELS)
    list(sparkvision.load(clip_dir).classify(str(PHOTOS[0]), candidate_labels=LABELS))
    again = zero_shot.text_embeddings(clip_dir, spec, LABELS)
    assert again is first and len(calls) == 1
    other = zero_shot.text_embeddings(clip_dir, spec, LABELS[:2])
    assert len(calls) == 2 and other.shape == (2, 16)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_zero_shot_labels_are_required_and_distinct(clip_dir: Path) -> None:
    with pytest.raises(ConfigError, match="zero-shot model: give the candidate labels"):
        list(sparkvision.load(clip_dir).classify(str(PHOTOS[0])))
    with pytest.raises(ConfigError, match="distinct"):
        list(sparkvision.load(clip_dir).classify(str(PHOTOS[0]), candidate_labels=["cat", "cat"]))


def test_one_request_policy_from_python_and_the_cli(clip_dir: Path) -> None:
    """The same candidate labels get the same answer from Python and the CLI (sparkvision.options;
    the service and Spark stages have their own tests): blanks skipped, a repeat refused, top-k at
    most the number of labels."""
    photo = str(PHOTOS[0])
    (p,) = sparkvision.load(clip_dir).classify(photo, candidate_labels="cat, dog,")
    assert sorted(p.labels) == ["cat", "dog"]
    runner = CliRunner()
    ok = runner.invoke(
        cli, ["classify", photo, "-m", str(clip_dir), "--labels", "cat, dog,", "-f", "json", "-k", "2"]
    )
    assert ok.exit_code == 0, ok.output
    assert sorted(json.loads(ok.stdout)[0]["labels"]) == ["cat", "dog"]
    for labels, top_k, message in (("cat,dog,cat", None, "repeated: cat"), ("cat,dog", 3, "between 1 and 2")):
        with pytest.raises(ConfigError, match=message):
            list(sparkvision.load(clip_dir).classify(photo, candidate_labels=labels, top_k=top_k))
        args = [
            "classify",
            photo,
            "-m",
            str(clip_dir),
            "--labels",
            labels,
            *(["-k", str(top_k)] if top_k else []),
        ]
        refused = runner.invoke(cli, args)
        assert refused.exit_code == 2 and message in refused.output, refused.output


def test_embed_returns_clip_image_embeddings(clip_dir: Path, clip_checkpoint: tuple[Path, Any, Any]) -> None:
    directory, model, _ = clip_checkpoint
    pixels = hf_processor(directory)(images=photos_rgb(), return_tensors="pt")
    with torch.no_grad():
        features = model.get_image_features(**pixels)
    expected = (features if isinstance(features, torch.Tensor) else features.pooler_output).numpy()
    predictions = list(sparkvision.load(clip_dir).embed([str(p) for p in PHOTOS]))
    assert all(p.labels == () and p.error is None for p in predictions)
    got = np.stack([p.embedding for p in predictions])
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


def test_cli_classify_with_labels(clip_dir: Path, clip_checkpoint: tuple[Path, Any, Any]) -> None:
    expected = _hf_probabilities(clip_checkpoint, LABELS)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "classify",
            str(PHOTOS[0]),
            "--model",
            str(clip_dir),
            "--labels",
            ",".join(LABELS),
            "-f",
            "json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    record = json.loads(result.stdout)
    record = record[0] if isinstance(record, list) else record
    assert record["labels"][0] == LABELS[int(np.argmax(expected[0]))]
    assert len(record["labels"]) == len(LABELS)  # top-k defaults to 5, capped at the number of labels

    missing = runner.invoke(cli, ["classify", str(PHOTOS[0]), "--model", str(clip_dir)])
    assert missing.exit_code == 2 and "--labels" in missing.output


def test_zero_shot_runs_without_torch(clip_dir: Path) -> None:
    """Run time needs ONNX Runtime and tokenizers only: torch and transformers are blocked here."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import sparkvision\n"
        f"p = next(sparkvision.load({str(clip_dir)!r}).classify({str(PHOTOS[0])!r}, candidate_labels=['cat', 'dog']))\n"
        "assert p.error is None and len(p.labels) == 2, p\n"
        "print('ok', p.labels)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_zero_shot_without_tokenizers_names_the_extra(
    clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tokenizers is the 'zero-shot' extra (a plain install has none): the error says how to get it."""
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    classifier = sparkvision.load(str(clip_dir))
    with pytest.raises(MissingExtraError, match=r"zero-shot model.*pip install 'sparkvision\[zero-shot\]'"):
        # Labels no other test uses, so that no cached text embedding can stand in for the tokenizer.
        list(classifier.classify(str(PHOTOS[0]), candidate_labels=["a kettle", "a lighthouse"]))
    result = CliRunner().invoke(
        cli, ["classify", str(PHOTOS[0]), "--model", str(clip_dir), "--labels", "x,y"]
    )
    assert result.exit_code == 2 and "sparkvision[zero-shot]" in result.output


def test_legacy_eos_token_config_pools_at_the_highest_token_id(tmp_path: Path) -> None:
    """openai/clip-vit-base-patch32's config still says eos_token_id=2: transformers then pools at the
    argmax of the token ids (the end-of-text token, highest in CLIP's vocabulary); padding must not move it."""
    checkpoint = _clip_checkpoint(tmp_path / "legacy", legacy_eos=True)
    assert checkpoint[1].config.text_config.eos_token_id == 2
    model_dir = import_model(checkpoint[0], "legacy", output_dir=tmp_path / "model")
    labels = ["cat", "a very long label for padding", "dog"]
    expected = _hf_probabilities(checkpoint, labels)
    for prediction, row in zip(
        sparkvision.load(model_dir).classify([str(p) for p in PHOTOS], candidate_labels=labels), expected
    ):
        got = np.zeros(len(labels))
        got[list(prediction.class_ids)] = prediction.scores
        assert np.abs(got - row).max() <= 1e-4
