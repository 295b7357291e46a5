"""Test data for the Spark tests: real photos in awkward formats, broken files, tiny models."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from sparkvision.models.spec import ModelSpec
from sparkvision.preprocess import PreprocessSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "images"

#: Two classes share a name on purpose (as ImageNet's two "crane" do).
TINY_LABELS = ("tabby", "crane", "crane", "espresso", "rocket", "tripod")


def write_tiny_model(directory: Path, *, size: int = 32, seed: int = 0) -> Path:
    """A small colour- and layout-sensitive ONNX classifier (conv → ReLU → mean → linear).

    The random convolution mixes the three channels differently, so swapping R and B, or getting a
    gray level wrong, changes every score.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    classes = len(TINY_LABELS)
    conv_w = rng.normal(0, 0.5, (8, 3, 4, 4)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (8,)).astype(np.float32)
    fc_w = rng.normal(0, 1.0, (8, classes)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["pixel_values", "conv_w", "conv_b"], ["conv"], strides=[4, 4]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["embeddings"], axis=1),
        helper.make_node("Gemm", ["embeddings", "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", 8]),
        ],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((conv_w, "conv_w"), (conv_b, "conv_b"), (fc_w, "fc_w"), (fc_b, "fc_b"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"))
    ModelSpec(
        name="tiny_colour",
        family="tiny",
        preprocess=PreprocessSpec(size=size, resize="crop", crop_pct=0.875, interpolation="bicubic"),
        labels=TINY_LABELS,
        outputs=("logits", "embeddings"),
        source="tests",
        license="Apache-2.0",
    ).save(directory)
    return directory


def rgba_png(path: Path) -> Path:
    """A real photo with a real alpha channel: a horizontal alpha ramp, fully transparent on the left."""
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((192, 160))
    alpha = np.tile(np.linspace(0, 255, photo.width).astype(np.uint8), (photo.height, 1))
    alpha[:, :24] = 0
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)
    return path


def gray_png(path: Path) -> Path:
    Image.open(EXAMPLES / "coffee.jpg").convert("L").resize((200, 150)).save(path)
    return path


def write_good_images(folder: Path) -> list[Path]:
    """Real photos as JPEG plus an RGBA PNG and a gray PNG (names sort in this order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        shutil.copy(EXAMPLES / "chelsea.jpg", folder / "a_chelsea.jpg"),
        shutil.copy(EXAMPLES / "rocket.jpg", folder / "b_rocket.jpg"),
        rgba_png(folder / "c_rgba.png"),
        gray_png(folder / "d_gray.png"),
    ]
    return [Path(p) for p in paths]


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A corrupt JPEG, an empty file and a truncated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    corrupt = folder / "e_corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    empty = folder / "f_empty.png"
    empty.write_bytes(b"")
    truncated = folder / "g_truncated.jpg"
    data = (EXAMPLES / "coffee.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"corrupt": corrupt, "empty": empty, "truncated": truncated}


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
