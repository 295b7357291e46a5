"""The service's limits and tuning knobs, in one frozen object (no web framework needed to build it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MAX_WAIT_MS", "LOOPBACK_HOSTS", "ServeSettings"]

#: Pixel limit for uploaded images: 50 megapixels covers every common camera photo, and keeps the
#: worst-case memory of one decode (≈ 150 MB as RGB) bounded for a service that decodes several at once.
DEFAULT_MAX_PIXELS = 50_000_000

#: How long a batch is held open for requests that have arrived and are still being decoded: long
#: enough for concurrent uploads of photos to finish decoding (measured with 8 clients in
#: ``benchmarks/serve_load.py``: 5 or 10 ms closed batches of 4, 15 ms and more batches of 8, at
#: 0.84 instead of 0.76-0.80 of the embedded images/s), short next to the inference of the batch it
#: fills. A lone request never waits.
DEFAULT_MAX_WAIT_MS = 20.0

#: Pixels decoded at once, over all requests: two photos of 32 megapixels, or one of 50, or hundreds
#: of phone photos. As RGB that is ≈ 200 MB of decoded pixels at most, whatever the number of clients.
DEFAULT_MAX_INFLIGHT_PIXELS = 64_000_000

#: Host names the service answers to when it listens on a loopback address: a page on another site
#: that points a name of its own at 127.0.0.1 (DNS rebinding) is refused.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


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
        max_inflight_bytes: request bytes being received or held at once, over all requests; a
            request waits for room before its body is read (its ``Content-Length``, or
            ``max_upload_bytes`` when it has none).
        max_inflight_pixels: pixels being decoded at once, over all requests (judged from the image
            headers before decoding); a request waits for room before its images are decoded.
        max_request_pixels: most pixels in one request, all its images together (413 above it).
        max_waiting: requests waiting for room at once; one more gets 503 with ``Retry-After``.
        max_wait_s: longest wait for room; after it the request gets 503 with ``Retry-After``.
        header_timeout_s: a connection must deliver a request's headers within this time (the
            command-line server enforces it; slow-loris clients are disconnected).
        body_timeout_s: longest pause while a request body arrives (408 and the connection closes).
        body_deadline_s: longest time to receive a whole request body (408 and the connection closes).
        max_models: most models loaded at once, the default one included; loading another unloads
            the least recently used idle one.
        build_models: build catalogue models that are not in the cache when a client asks for them
            (offline for the EfficientNet-Lite family; a Hub model needs the network). Off: clients
            can use only the cached and preloaded models.
        allowed_hosts: host names (``Host`` header, port ignored) the service answers to; others
            get 400. ``None`` answers any host.
        cors_origins: web origins (``https://app.example.com``) whose pages may call the API from a
            browser; empty (the default) sends no CORS headers, so browsers keep other sites out.
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
    max_inflight_bytes: int = 64 * 1024 * 1024
    max_inflight_pixels: int = DEFAULT_MAX_INFLIGHT_PIXELS
    max_request_pixels: int = DEFAULT_MAX_INFLIGHT_PIXELS
    max_waiting: int = 256
    max_wait_s: float = 10.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 15.0
    body_deadline_s: float = 120.0
    max_models: int = 4
    build_models: bool = True
    allowed_hosts: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = {
            "max_upload_bytes": self.max_upload_bytes,
            "max_images": self.max_images,
            "max_pixels": self.max_pixels,
            "max_batch": self.max_batch,
            "max_queue": self.max_queue,
            "default_top_k": self.default_top_k,
            "max_inflight_bytes": self.max_inflight_bytes,
            "max_inflight_pixels": self.max_inflight_pixels,
            "max_request_pixels": self.max_request_pixels,
            "max_waiting": self.max_waiting,
            "max_models": self.max_models,
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
        for name in ("max_wait_s", "header_timeout_s", "body_timeout_s", "body_deadline_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_inflight_bytes < self.max_upload_bytes:
            raise ConfigError(
                f"max_inflight_bytes ({self.max_inflight_bytes:,}) must be at least max_upload_bytes "
                f"({self.max_upload_bytes:,}), or the largest allowed upload could never be received"
            )
        if self.max_request_pixels > self.max_inflight_pixels:
            raise ConfigError(
                f"max_request_pixels ({self.max_request_pixels:,}) must be at most max_inflight_pixels "
                f"({self.max_inflight_pixels:,}), or such a request could never be decoded"
            )
        object.__setattr__(self, "preload", tuple(self.preload))
        if self.max_models < 1 + len(set(self.preload)):
            raise ConfigError(
                f"max_models ({self.max_models}) must leave room for the default model and the "
                f"{len(set(self.preload))} preloaded one(s)"
            )
        if self.allowed_hosts is not None:
            hosts = tuple(h.strip().lower().strip("[]") for h in self.allowed_hosts if h.strip())
            if not hosts:
                raise ConfigError("allowed_hosts is empty: name at least one host, or pass None for any")
            object.__setattr__(self, "allowed_hosts", None if "*" in hosts else hosts)
        origins = tuple(o.strip().rstrip("/") for o in self.cors_origins if o.strip())
        for origin in origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"CORS origin {origin!r} must look like https://host[:port], or be '*'")
        object.__setattr__(self, "cors_origins", origins)
