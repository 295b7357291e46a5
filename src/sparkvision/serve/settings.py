"""The service's limits and tuning knobs, in one frozen object (no web framework needed to build it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_WAIT_MS", "ServeSettings"]

#: Pixel limit for uploaded images: 50 megapixels covers every common camera photo, and keeps the
#: worst-case memory of one decode (≈ 150 MB as RGB) bounded for a service that decodes several at once.
DEFAULT_MAX_PIXELS = 50_000_000

#: How long a batch is held open for requests that have arrived and are still being decoded: long
#: enough for concurrent uploads of photos to finish decoding (measured with 8 clients in
#: ``benchmarks/serve_load.py``: 5 or 10 ms closed batches of 4, 15 ms and more batches of 8, at
#: 0.84 instead of 0.76-0.80 of the embedded images/s), short next to the inference of the batch it
#: fills. A lone request never waits.
DEFAULT_MAX_WAIT_MS = 20.0


@dataclass(frozen=True)
class ServeSettings:
    """How the service behaves; every field has a safe default.

    Attributes:
        api_key: when set, every ``/v1/*`` request must send it (``Authorization: Bearer KEY`` or
            ``X-API-Key: KEY``); the page, ``/healthz`` and ``/docs`` stay open.
        max_upload_bytes: largest request body accepted (413 above it), checked before and while reading.
        max_images: most images in one request (413 above it).
        max_pixels: images with more pixels (width × height) are refused from their header (413).
        max_batch: most images in one ONNX Runtime call.
        max_wait_ms: how long the batcher holds a batch open for requests that have already arrived
            and are still being decoded. Never waits when no other request is on its way.
        max_queue: images waiting for inference beyond which new requests get 503 (back-pressure).
        default_top_k: labels per image when the request does not say.
        threads: ONNX Runtime threads (default: physical cores).
        decode_workers: threads decoding uploads in parallel (default: max(2, cores)).
        preload: load these extra models at start-up besides the default one.
    """

    api_key: str | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_images: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 16
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int = 512
    default_top_k: int = 5
    threads: int | None = None
    decode_workers: int | None = None
    preload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = {
            "max_upload_bytes": self.max_upload_bytes,
            "max_images": self.max_images,
            "max_pixels": self.max_pixels,
            "max_batch": self.max_batch,
            "max_queue": self.max_queue,
            "default_top_k": self.default_top_k,
        }
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms!r}")
        for name, value in (("threads", self.threads), ("decode_workers", self.decode_workers)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty: pass a real key, or none to leave the API open")
        object.__setattr__(self, "preload", tuple(self.preload))
