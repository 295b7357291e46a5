"""The service under pressure, in process: budgets and 503, per-request pixels, model unloading,
/metrics, Host allow-list, CORS and UTF-8 API keys (the tiny colour model; real PNG uploads)."""

from __future__ import annotations

import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import png_bytes


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, data, "image/png")) for name, data in items]


class _GatedPrepare:
    """The real classifier, whose decoding waits until released: requests pile up in front of it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    @property
    def spec(self):
        return self.inner.spec

    def prepare(self, source, **options):
        self.entered.release()
        assert self.release.wait(30)
        return self.inner.prepare(source, **options)

    def classify_batch(self, sources, **options):
        return self.inner.classify_batch(sources, **options)


@pytest.mark.parametrize("budget", ["pixels", "bytes"])
def test_over_the_budget_requests_wait_then_get_503_with_retry_after(serve_client, budget):
    from sparkvision import Classifier

    gated: dict[str, _GatedPrepare] = {}

    def loader(source, settings):
        gated["clf"] = _GatedPrepare(Classifier(source))
        return gated["clf"]

    image = png_bytes((220, 20, 20))  # 64 × 48 = 3,072 pixels, a few hundred bytes
    room = {"pixels": dict(max_inflight_pixels=4000, max_request_pixels=4000)}
    room["bytes"] = dict(max_upload_bytes=len(image) + 300, max_inflight_bytes=len(image) + 300)
    client = serve_client(loader=loader, max_waiting=1, max_wait_s=0.5, **room[budget])

    def post():
        return client.post("/v1/classify", files=_files(("red.png", image)))

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post)  # holds the budget while its decoding is held up
        assert gated["clf"].entered.acquire(timeout=10)
        second = pool.submit(post)  # waits in line (one place) ...
        time.sleep(0.1)
        third = post()  # ... so a third finds the line full: 503 at once
        assert third.status_code == 503 and third.headers["Retry-After"] == "1"
        assert third.json()["code"] == "busy" and "already wait" in third.json()["error"]
        waited = second.result(timeout=10)  # no room within max_wait_s: 503 as well
        assert waited.status_code == 503 and waited.headers["Retry-After"] == "1"
        assert "within 0.5 s" in waited.json()["error"]
        gated["clf"].release.set()
        assert first.result(timeout=10).json()["results"][0]["labels"][0] == "red"
    assert post().status_code == 200  # the budget was given back
    metrics = client.get("/metrics").text
    assert 'sparkvision_rejected_total{reason="busy"} 2' in metrics
    assert 'sparkvision_http_requests_total{route="/v1/classify",method="POST",status="503"} 2' in metrics


def test_per_request_pixel_budget_is_413(serve_client):
    client = serve_client(max_request_pixels=5000, max_inflight_pixels=5000)
    two = client.post(
        "/v1/classify", files=_files(("a.png", png_bytes((9, 200, 9))), ("b.png", png_bytes((9, 200, 9))))
    )
    assert two.status_code == 413 and two.json()["code"] == "request_too_large"
    assert two.json()["limit_pixels"] == 5000 and "6,144 pixels" in two.json()["error"]
    one = client.post("/v1/classify", files=_files(("a.png", png_bytes((9, 200, 9)))))
    assert one.status_code == 200 and one.json()["results"][0]["labels"][0] == "green"


def _ready(client, model: str, image: bytes):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = client.post(f"/v1/classify?model={model}", files=_files(("x.png", image)))
        if response.status_code != 503:
            return response
        time.sleep(0.05)
    raise AssertionError(f"{model} did not load")


def test_least_recently_used_model_is_unloaded(serve_client, colour_model, monkeypatch, tmp_path):
    from sparkvision.models.spec import ModelSpec

    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path))
    for name, labels in (("colour_a", ("Ra", "Ga", "Ba")), ("colour_b", ("Rb", "Gb", "Bb"))):
        shutil.copytree(colour_model, tmp_path / "models" / name)
        ModelSpec.load(colour_model).with_changes(name=name, labels=labels).save(tmp_path / "models" / name)
    client = serve_client(max_models=2)
    red = png_bytes((230, 10, 10))

    def states() -> dict[str, str]:
        return {m["name"]: m["state"] for m in client.get("/v1/models").json()["models"]}

    assert _ready(client, "colour_a", red).json()["results"][0]["labels"][0] == "Ra"
    assert states()["colour_a"] == "ready"
    assert _ready(client, "colour_b", red).json()["results"][0]["labels"][0] == "Rb"
    after_b = states()
    assert after_b["colour_a"] == "unloaded" and after_b["colour_b"] == "ready"
    assert after_b["tiny_colour"] == "ready"  # the default model stays
    assert _ready(client, "colour_a", red).json()["results"][0]["labels"][0] == "Ra"  # loads again
    assert states()["colour_b"] == "unloaded"
    assert "sparkvision_model_evictions_total 2" in client.get("/metrics").text


_SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def test_metrics_after_requests(serve_client):
    client = serve_client()
    red = png_bytes((230, 10, 10))
    assert (
        client.post("/v1/classify", files=_files(("r.png", red), ("t.png", b"not an image"))).status_code
        == 200
    )
    assert client.post("/v1/classify", files=_files(("t.txt", b"text"))).status_code == 415
    client.get("/v2/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(_SAMPLE.match(line) for line in samples), [s for s in samples if not _SAMPLE.match(s)]
    for line in (
        'sparkvision_http_requests_total{route="/v1/classify",method="POST",status="200"} 1',
        'sparkvision_http_requests_total{route="/v1/classify",method="POST",status="415"} 1',
        'sparkvision_http_requests_total{route="unmatched",method="GET",status="404"} 1',
        'sparkvision_http_request_duration_seconds_count{route="/v1/classify"} 2',
        'sparkvision_batch_size_bucket{model="tiny_colour",le="1"} 1',
        'sparkvision_batch_size_count{model="tiny_colour"} 1',
        'sparkvision_images_decoded_total{outcome="ok"} 1',
        'sparkvision_images_decoded_total{outcome="error"} 2',
        'sparkvision_queue_depth{queue="inference"} 0',
        'sparkvision_queue_depth{queue="decode"} 0',
        'sparkvision_model_loaded{model="tiny_colour"} 1',
        "# TYPE sparkvision_http_request_duration_seconds histogram",
    ):
        assert line in text, line
    load = re.search(r'^sparkvision_model_load_seconds\{model="tiny_colour"\} ([0-9.e-]+)$', text, re.M)
    assert load and 0 < float(load.group(1)) < 60


def test_host_allow_list(serve_client):
    client = serve_client(allowed_hosts=("localhost", "127.0.0.1", "::1", "testserver"))
    refused = client.get("/healthz", headers={"Host": "rebind.attacker.example"})
    assert refused.status_code == 400 and refused.json()["code"] == "host_not_allowed"
    assert client.get("/v1/models", headers={"Host": "testserver.example"}).status_code == 400
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    assert serve_client().get("/healthz", headers={"Host": "any.example"}).status_code == 200  # default


def test_cors_is_off_by_default_and_an_option(serve_client):
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    closed = serve_client().options("/v1/classify", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    client = serve_client(cors_origins=("https://app.example.com",))
    allowed = client.options(
        "/v1/classify", headers={**preflight, "Access-Control-Request-Headers": "X-API-Key"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    other = client.options("/v1/classify", headers={**preflight, "Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_api_key_with_non_ascii_characters(serve_client):
    key = "clé-ключ-鍵"
    client = serve_client(api_key=key)
    utf8 = key.encode("utf-8")  # what curl, browsers and httpx send
    assert client.get("/v1/models", headers={"X-API-Key": utf8}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": b"Bearer " + utf8}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": utf8[:-1]}).status_code == 401


def test_limits_settings_are_checked():
    from sparkvision.errors import ConfigError
    from sparkvision.serve import ServeSettings

    for bad in (
        {"max_inflight_bytes": 1024, "max_upload_bytes": 2048},
        {"max_request_pixels": 10, "max_inflight_pixels": 5},
        {"max_models": 1, "preload": ("other",)},
        {"body_timeout_s": 0},
        {"cors_origins": ("app.example.com",)},
        {"allowed_hosts": ()},
    ):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)
    assert ServeSettings(allowed_hosts=("*",)).allowed_hosts is None
