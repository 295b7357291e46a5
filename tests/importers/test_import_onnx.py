"""Plain ONNX import: explicit preprocessing and labels, checked inputs/outputs, renamed tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from import_helpers import PHOTOS  # noqa: E402

from sparkvision import Classifier  # noqa: E402
from sparkvision.errors import ModelImportError  # noqa: E402
from sparkvision.importers import import_model  # noqa: E402
from sparkvision.models.store import load_model_dir, models_root  # noqa: E402
from sparkvision.preprocess import PreprocessSpec, preprocess  # noqa: E402

SPEC = PreprocessSpec(size=224, resize="crop", crop_pct=0.875, interpolation="bilinear")


class Net(torch.nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.head(features) * 10, features


def _export(
    path: Path, *, dynamic: bool = True, channels_last: bool = False, two_inputs: bool = False
) -> Path:
    net = Net().eval()
    module: torch.nn.Module = net
    example: tuple[torch.Tensor, ...] = (torch.randn(2, 3, 224, 224),)
    names = ["image"]
    if channels_last:

        class NHWC(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return self.net(x.permute(0, 3, 1, 2))

        module, example = NHWC(), (torch.randn(2, 224, 224, 3),)
    if two_inputs:

        class Two(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return self.net(x + y)

        module, example, names = Two(), (example[0], example[0]), ["a", "b"]
    axes = {n: {0: "n"} for n in [*names, "scores", "feats"]} if dynamic else None
    torch.onnx.export(
        module, example, str(path), input_names=names, output_names=["scores", "feats"],
        dynamic_axes=axes, opset_version=17, dynamo=False,
    )  # fmt: skip
    return path


def test_onnx_import_with_explicit_preprocessing_and_labels(tmp_home: Path, tmp_path: Path) -> None:
    source = _export(tmp_path / "net.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\ncow\ndog\n")
    path = import_model(
        source, labels=labels, preprocess=SPEC, output="scores", embeddings_output="feats", license="mit"
    )
    spec = load_model_dir(path)
    assert path == models_root() / "net"
    assert spec.labels == ("ant", "bee", "cow", "dog") and spec.preprocess == SPEC
    assert (
        spec.outputs == ("logits", "embeddings") and spec.license == "mit" and spec.source == "onnx:net.onnx"
    )

    from sparkvision.images import decode_image

    net = Net().eval()
    exact = Classifier(path, decode="exact")  # compared with torch on our exact preprocessing, at 1e-5
    predictions = list(exact.classify([str(p) for p in PHOTOS], top_k=4, embeddings=True))
    for photo, prediction in zip(PHOTOS, predictions):
        pixels = torch.from_numpy(preprocess(decode_image(photo).image, SPEC))[None]
        with torch.no_grad():
            logits, features = net(pixels)
        probabilities = torch.softmax(logits, 1)[0].numpy()
        order = list(np.argsort(-probabilities, kind="stable"))
        assert list(prediction.class_ids) == order
        assert np.allclose(prediction.scores, probabilities[order], atol=1e-5)
        assert np.allclose(prediction.embedding, features[0].numpy(), atol=1e-5)


def test_onnx_import_needs_labels_and_preprocessing(tmp_home: Path, tmp_path: Path) -> None:
    source = _export(tmp_path / "net.onnx")
    with pytest.raises(ModelImportError, match="an ONNX file carries no labels and preprocessing"):
        import_model(source, output="scores")
    with pytest.raises(
        ModelImportError, match=r"has 2 outputs .*name the one holding the class scores with --output"
    ):
        import_model(source, labels=["a", "b", "c", "d"], preprocess=SPEC)
    with pytest.raises(ModelImportError, match="3 labels for a model with 4 outputs"):
        import_model(source, labels=["a", "b", "c"], preprocess=SPEC, output="scores")
    with pytest.raises(ModelImportError, match="has no output 'nope'"):
        import_model(source, labels=["a", "b", "c", "d"], preprocess=SPEC, output="nope")
    assert not models_root().exists() or not any(models_root().iterdir())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dynamic": False}, "batch dimension must be dynamic"),
        ({"channels_last": True}, "channels-last"),
        ({"two_inputs": True}, "must take exactly one input"),
    ],
)
def test_onnx_files_with_unexpected_inputs_are_refused(
    tmp_home: Path, tmp_path: Path, options: dict[str, bool], message: str
) -> None:
    source = _export(tmp_path / "odd.onnx", **options)
    with pytest.raises(ModelImportError, match=message):
        import_model(source, labels=["a", "b", "c", "d"], preprocess=SPEC, output="scores")
    assert not models_root().exists() or not any(models_root().iterdir())


def test_size_must_match_a_fixed_input(tmp_home: Path, tmp_path: Path) -> None:
    source = _export(tmp_path / "net.onnx", dynamic=True)
    wrong = PreprocessSpec(size=32)
    # The exported graph has a fixed 224×224 spatial size; 32 px inputs cannot work.
    with pytest.raises(ModelImportError, match="expects 224 px images but --size is 32"):
        import_model(source, labels=["a", "b", "c", "d"], preprocess=wrong, output="scores")
