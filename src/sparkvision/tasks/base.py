"""What every task shares: a model directory, its spec, decoding and preprocessing one image, running
the engine (repairing a damaged cached model once), and streaming inputs through the scheduler.

A task subclass adds only what it computes from a batch: :class:`LabelTask` ranks labels
(classification, zero-shot); other tasks (captioning) build on :class:`ImageTask` directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from ..engine import Engine, forget_engines, get_engine
from ..errors import ConfigError, ImageDecodeError, ModelFormatError, SparkvisionError
from ..images import DEFAULT_MAX_PIXELS, DecodedImage, DecodedPixels, decode_image, decode_pixels
from ..models.catalogue import DEFAULT_MODEL, rebuildable, resolve_model
from ..models.quantize import warn_if_saturating
from ..models.spec import MODEL_FILE, ModelSpec
from ..models.store import load_model_dir
from ..preprocess import PreprocessSpec, preprocess
from ..results import PreparedImage
from ..scheduling import Chunk, Loaded, lane_count, run_batches
from ..sources import iter_sources
from .registry import task_class

__all__ = [
    "DECODE_MODES",
    "DEFAULT_BATCH_SIZE",
    "DecodeMode",
    "ImageTask",
    "crop_window_resize",
    "draft_short_side",
    "for_model",
    "load",
]

log = logging.getLogger(__name__)

#: Images per ONNX Runtime call. Measured with benchmarks/throughput.py (see README): throughput is
#: flat from 8 to 32 on 2 cores; 16 keeps latency and memory low.
DEFAULT_BATCH_SIZE = 16

_REBUILD_LOCK = threading.Lock()
#: Per lane thread, by input size: the batch buffer :meth:`ImageTask._lane_rows` gives the lane. A lane
#: thread belongs to one ``classify`` call's pool and handles one batch at a time; it goes (and its
#: buffer with it) when the call ends.
_LANE_BUFFERS = threading.local()
R = TypeVar("R")
DecodeMode = Literal["fast", "exact"]
#: ``"fast"`` (default): plain JPEGs decoded by libjpeg-turbo straight into an array
#: (``images.decode_pixels``; the same pixels as Pillow's decoder), large ones at a reduced DCT scale,
#: and only the crop window resampled, with Pillow's filter as NumPy matrix products
#: (``preprocess.resample_crop``; a few values one or two levels off the reference's, from rounding).
#: ``"exact"``: full Pillow decode, then resize and crop exactly as the reference processors
#: (timm/torchvision, Hugging Face) do, whatever the size — for parity checks.
DECODE_MODES: tuple[DecodeMode, ...] = ("fast", "exact")
Task = TypeVar("Task", bound="ImageTask")


def draft_short_side(spec: PreprocessSpec) -> int:
    """The decode hint for :func:`decode_image`: JPEGs may be decoded reduced (DCT scaling) as long as
    their short side stays at least twice the resize target.

    On 586 real-photo JPEGs (``benchmarks/decode.py --agreement``) top-1 agreement with full decoding
    was 580 / 584 / 580 (Lite0 / 1 / 2) at twice, 581 / 586 / 584 at three times, 0.97 at the target
    itself. Three times would cost camera-sized photos 50 % more decoding (slower than Pillow's path
    when issue 15 was filed) for a handful of near-ties (exact's first two labels within 0.015) — a
    difference inside the measurement's own noise (± 0.4 % at 586 photos), so twice it is."""
    return 2 * spec.resize_short_side


def crop_window_resize(decoded: DecodedImage | DecodedPixels, spec: PreprocessSpec) -> bool:
    """Whether the fast mode resamples only the crop window (see
    :func:`sparkvision.preprocess.resample_crop`): for every image it resizes and crops.

    Resampling the crop window alone skips the pixels the centre crop would throw away: about a
    fifth of the decode-and-preprocess time of an ImageNet-sized photo, a third of a large one's.
    Rounding can move a few output values (up to 7 in 10,000) by one or two levels, enough to
    move a tiny random model's scores by 1e-3 but not a real photo's top label (README,
    "Performance"); the ``exact`` mode, for parity checks, always resizes the whole image and crops,
    bit-identical to the reference frameworks.
    """
    return spec.do_resize and spec.resize_shape(*decoded.size) != (spec.size, spec.size)


def load(name: str | Path = DEFAULT_MODEL, **options: Any) -> ImageTask:
    """The task object for a catalogue name, a cached model or a model directory: a
    :class:`~sparkvision.Classifier` for classification models, a zero-shot classifier for CLIP
    models, and so on — chosen by the ``task`` in the model's ``sparkvision.json``."""
    return ImageTask.pretrained(name, **options)


def for_model(model_dir: str | Path, spec: ModelSpec | None = None, **options: Any) -> ImageTask:
    """The task object for a model directory (and its spec, when already read), of the class its
    ``task`` names — for fronts that receive a model directory rather than a name (Spark workers)."""
    spec = spec if spec is not None else load_model_dir(model_dir)
    return task_class(spec.task)(model_dir, spec, **options)


class ImageTask:
    """One model and what it does to images. Cheap to create; the ONNX session loads on first use.

    Args:
        model_dir: a sparkvision model directory (see :meth:`pretrained` for names).
        spec: the model's spec (read from ``model_dir`` when omitted).
        threads: cores to use (default: physical cores). A stream of many images runs that many
            batches at once, each decoded and inferred on one core ("lanes", ONNX Runtime with one
            intra-op thread); a single batch (one batch's worth of in-memory images, as the web
            service sends) runs on ONNX Runtime with this many intra-op threads.
        decode_workers: set it to use the pipelined mode instead of lanes: this many threads decode
            and preprocess ahead of one inference at a time on ``threads`` intra-op threads (0:
            decode inline). See :mod:`sparkvision.scheduling`.
        max_pixels: images with more pixels are refused (decompression-bomb guard).
        decode: ``"fast"`` (default) or ``"exact"``, see :data:`DECODE_MODES`. ``"exact"`` reproduces
            the reference preprocessing to float rounding for every image; ``"fast"`` reduces large
            photos (JPEG DCT scale) and resamples only the crop window: within two levels of
            ``"exact"`` on a few values below twice the resize size, a fraction of its time above,
            and the same top label wherever that label is clear (README, "Performance").
    """

    #: The task name this class serves (set by :func:`~sparkvision.tasks.registry.register_task`).
    task: ClassVar[str] = ""
    #: ``cls.pretrained`` also returns models whose task class derives from this (default: ``cls``).
    pretrained_accepts: ClassVar[type[ImageTask] | None] = None

    def __init__(
        self,
        model_dir: str | Path,
        spec: ModelSpec | None = None,
        *,
        threads: int | None = None,
        decode_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        catalogue_name: str | None = None,
        decode: DecodeMode = "fast",
    ) -> None:
        if decode not in DECODE_MODES:
            raise ConfigError(f"decode must be 'fast' or 'exact', got {decode!r}")
        self.decode = decode
        self.model_dir = Path(model_dir)
        self._spec = spec
        self.threads = threads
        self.decode_workers = decode_workers
        self.max_pixels = max_pixels
        self.catalogue_name = catalogue_name

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def pretrained(cls: type[Task], name: str | Path = DEFAULT_MODEL, **options: Any) -> Task:
        """The task object for a catalogue name, a cached model or a model directory path.

        The class comes from the model's task (see :mod:`sparkvision.tasks.registry`); it must be
        this class or one it accepts (``Classifier.pretrained`` takes any labelling model, CLIP's
        zero-shot ones included). Catalogue models that ship with a Python package
        (``efficientnet_lite0/1/2``) are converted into the cache on first use; later calls load the
        cached directory.
        """
        model_dir, spec = resolve_model(name)
        served_by = task_class(spec.task)
        accepted = cls.pretrained_accepts or cls
        if not issubclass(served_by, accepted):
            raise ConfigError(
                f"model {spec.name!r} is a {spec.task} model: load it with {served_by.__name__}.pretrained "
                f"or sparkvision.load, not {cls.__name__}"
            )
        catalogue_name = None if isinstance(name, Path) else str(name)
        return served_by(model_dir, spec, catalogue_name=catalogue_name, **options)  # type: ignore[return-value]

    @property
    def spec(self) -> ModelSpec:
        if self._spec is None:
            self._spec = load_model_dir(self.model_dir)
        return self._spec

    @property
    def engine(self) -> Engine:
        """The engine for single batches (``threads`` intra-op threads), shared process-wide."""
        return self._engine(self.threads)

    def _engine(self, threads: int | None) -> Engine:
        warn_if_saturating(self.spec)  # an int8 model quantized for another kind of CPU
        return get_engine(self.model_dir / MODEL_FILE, threads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, model_dir={str(self.model_dir)!r})"

    # -- one image --------------------------------------------------------------------------------
    def prepare(
        self, source: Any, *, max_pixels: int | None = None, out: np.ndarray | None = None
    ) -> PreparedImage:
        """Decode and preprocess one image (a path, bytes, a Pillow image, an H×W×3 array, a decoded
        image) for this model; run the result later, alone or batched.

        ``max_pixels`` overrides the task's decompression-bomb limit. ``out``: a float32
        ``3 × S × S`` array (a row of a batch being filled) to write the tensor into, instead of a
        new one; the result's ``pixels`` is then ``out``. Raises
        :class:`~sparkvision.errors.ImageDecodeError` for an image that cannot be read — also when a
        decoder fails in an unforeseen way, so that one image never takes its batch down.
        """
        spec = self.spec.preprocess
        exact = self.decode == "exact"
        if isinstance(source, PreparedImage):
            if source.preprocess != spec:
                raise ConfigError(
                    f"this image was prepared for another model's preprocessing, not {self.spec.name!r}'s"
                )
            if out is None:
                return source
            np.copyto(out, source.pixels)
            return PreparedImage(out, source.width, source.height, spec)
        try:
            if isinstance(source, (DecodedImage, DecodedPixels)):
                decoded = source
            else:
                limit = self.max_pixels if max_pixels is None else max_pixels
                if exact:
                    decoded = decode_image(source, max_pixels=limit)
                else:  # plain JPEGs straight into an array (images.decode_pixels)
                    decoded = decode_pixels(source, max_pixels=limit, min_short_side=draft_short_side(spec))
            image = decoded.pixels if isinstance(decoded, DecodedPixels) else decoded.image
            fast = not exact and crop_window_resize(decoded, spec)
            pixels = preprocess(image, spec, out, fast=fast)
        except SparkvisionError:
            raise
        except Exception as exc:  # a decoder bug
            raise ImageDecodeError(
                f"unexpected error while reading the image: {exc.__class__.__name__}: {exc}"
            ) from exc
        return PreparedImage(pixels, decoded.width, decoded.height, spec)

    def _load(self, source: Any, out: np.ndarray | None = None) -> Loaded:
        """``prepare`` that never raises for a bad image: the reason goes on the row instead."""
        if source is None:
            return Loaded(None, error="no image data (null input)")
        try:
            prepared = self.prepare(source, out=out)
        except SparkvisionError as exc:  # prepare() turns a decoder bug into ImageDecodeError too
            return Loaded(None, error=str(exc))
        return Loaded(prepared.pixels, prepared.width, prepared.height)

    def _lane_rows(self, count: int) -> np.ndarray:
        """The calling lane thread's batch buffer (at least ``count`` rows of this model's input),
        reused from one batch to the next, so that the engine reads a batch in place
        (:func:`~sparkvision.scheduling.stack_pixels`) and no batch pays for fresh pages. Safe
        because a lane's ``infer`` is done with a batch's pixels before its thread loads the next."""
        size = self.spec.preprocess.size
        buffers = _LANE_BUFFERS.__dict__
        rows = buffers.get(size)
        if rows is None or len(rows) < count:
            rows = buffers[size] = np.empty((count, 3, size, size), dtype=np.float32)
        return rows

    # -- batches ----------------------------------------------------------------------------------
    def _run(self, batch: Any, outputs: list[str], *, lane: bool = False) -> list[np.ndarray]:
        """Run the engine (a one-thread one in a lane). A damaged cached catalogue model is rebuilt
        by the model store once, then the batch is retried."""
        return self._with_repair(lambda: self._engine(1 if lane else self.threads).run(batch, outputs))

    def _with_repair(self, call: Callable[[], R]) -> R:
        try:
            return call()
        except ModelFormatError:
            if not rebuildable(self.catalogue_name, self.model_dir):
                raise
            with _REBUILD_LOCK:  # two lanes may find the damage at once: rebuild once
                try:
                    return call()
                except ModelFormatError:
                    log.warning("model file in %s is damaged; rebuilding %s", self.model_dir, self.spec.name)
                    resolve_model(str(self.catalogue_name), rebuild=True)
                    forget_engines()
            return call()

    def _stream(
        self,
        inputs: Any,
        infer: Callable[[Chunk, bool], list[R]],
        *,
        batch_size: int | None = None,
        recursive: bool = False,
        progress: Any = None,
    ) -> Iterator[R]:
        """Decode, batch and ``infer`` every input, yielding one result per input in input order.

        ``progress``: an object with ``update(n)`` (e.g. a tqdm bar), called after each batch.
        """
        size = batch_size or DEFAULT_BATCH_SIZE
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}")
        lanes = lane_count(inputs, size, self.threads, self.decode_workers)
        sources = enumerate(iter_sources(inputs, recursive=recursive))
        for results in run_batches(
            sources,
            size=size,
            lanes=lanes,
            decode_workers=self.decode_workers,
            load=self._load,
            infer=infer,
            rows=self._lane_rows,
        ):
            yield from results
            if progress is not None:
                progress.update(len(results))
