"""The HTTP API through FastAPI's test client, on a tiny real ONNX model (dominant colour → label)."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import pytest
from serve_helpers import COLOURS, png_bytes, wait_ready

from sparkvision.results import Prediction

RECORD_KEYS = {"path", "labels", "scores", "class_ids", "error"}


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def png_bomb(side: int = 20_000) -> bytes:
    """A real decompression bomb: a valid 1-bit PNG of side × side black pixels, a few tens of KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# -- the happy path -----------------------------------------------------------------------------------
def test_health_models_and_one_image(serve_client, red_png):
    client = serve_client()
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "tiny_colour"

    models = client.get("/v1/models").json()
    assert models["default"] == "tiny_colour"
    row = next(m for m in models["models"] if m["name"] == "tiny_colour")
    assert row["state"] == "ready" and row["available"] and row["num_classes"] == 3

    response = client.post("/v1/classify", files=_files(("../secret/dir/red.png", red_png)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny_colour" and body["top_k"] == 3  # default 5, capped at the class count
    (record,) = body["results"]
    assert set(record) == RECORD_KEYS
    assert record["path"] == "red.png"  # the file name only, never a client path
    assert record["labels"][0] == "red" and record["class_ids"][0] == 0
    assert record["scores"] == sorted(record["scores"], reverse=True)
    assert sum(record["scores"]) == pytest.approx(1.0, abs=1e-5)
    assert record["error"] is None


def test_records_are_the_cli_json_records(serve_client, blue_jpeg, colour_model, tmp_path):
    """Same keys, same values as ``Prediction.to_dict`` for the same image (path aside)."""
    from sparkvision import Classifier

    client = serve_client()
    body = client.post("/v1/classify?top_k=2", files=_files(("blue.jpg", blue_jpeg))).json()
    expected = Classifier(colour_model).classify_batch([blue_jpeg], top_k=2)[0].to_dict()
    expected["path"] = "blue.jpg"
    assert body["results"] == [expected]
    assert set(expected) == {f.name for f in fields(Prediction)} & RECORD_KEYS | {"path"}


def test_several_files_keep_their_order(serve_client):
    client = serve_client()
    colours = [(240, 10, 10), (10, 240, 10), (10, 10, 240), (10, 240, 10)]
    uploads = [(f"img{i}.png", png_bytes(c)) for i, c in enumerate(colours)]
    body = client.post("/v1/classify?top_k=1", files=_files(*uploads)).json()
    assert [r["path"] for r in body["results"]] == [name for name, _ in uploads]
    assert [r["labels"] for r in body["results"]] == [["red"], ["green"], ["blue"], ["green"]]
    assert len(body["batch_sizes"]) == 4 and all(size >= 1 for size in body["batch_sizes"])


def test_raw_body_and_files_field(serve_client, blue_jpeg, red_png):
    client = serve_client()
    raw = client.post("/v1/classify", content=blue_jpeg, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.json()["results"][0]["labels"][0] == "blue" and raw.json()["results"][0]["path"] is None
    plural = client.post("/v1/classify", files=[("files", ("r.png", red_png, "image/png"))])
    assert plural.json()["results"][0]["labels"][0] == "red"


def test_mixed_good_and_bad_images(serve_client, red_png):
    """One bad file among good ones is an error record (like a CLI error row), not a failed request."""
    client = serve_client()
    response = client.post("/v1/classify", files=_files(("red.png", red_png), ("notes.jpg", b"just text")))
    assert response.status_code == 200
    good, bad = response.json()["results"]
    assert good["labels"][0] == "red"
    assert bad == {
        "path": "notes.jpg",
        "labels": [],
        "scores": [],
        "class_ids": [],
        "error": bad["error"],
    }
    assert "not a recognised image" in bad["error"]


# -- bad input ----------------------------------------------------------------------------------------
def _truncated_jpeg(examples_dir: Path) -> bytes:
    data = (examples_dir / "chelsea.jpg").read_bytes()
    return data[: len(data) // 2]


BAD_REQUESTS = {
    "empty body": (dict(content=b""), 422, "no_image"),
    "multipart without a file": (dict(data={"candidate_labels": "x"}, files={"other": ("", b"")}), 422, None),
    "wrong field name": (
        dict(files={"image": ("a.png", png_bytes((1, 2, 3)), "image/png")}),
        422,
        "wrong_field",
    ),
    "a path instead of a file": (dict(files={"file": (None, b"/etc/passwd")}), 422, "not_a_file"),
    "text file named .jpg": (
        dict(files={"file": ("cat.jpg", b"hello, I am text\n" * 50, "image/jpeg")}),
        415,
        "unsupported_media_type",
    ),
    "text body": (
        dict(content=b"GET /etc/passwd", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    ),
    "decompression bomb png": (
        dict(files={"file": ("bomb.png", png_bomb(), "image/png")}),
        413,
        "image_too_large",
    ),
    "unknown model": (dict(params={"model": "resnet9000"}, content=b"x"), 404, "unknown_model"),
    "model as a path": (dict(params={"model": "../../etc"}, content=b"x"), 404, "unknown_model"),
    "top_k=-1": (dict(params={"top_k": -1}, content=b"x"), 422, "bad_top_k"),
    "top_k=0": (dict(params={"top_k": 0}, content=b"x"), 422, "bad_top_k"),
    "top_k above classes": (dict(params={"top_k": 4}, content=png_bytes((9, 9, 9))), 422, "bad_top_k"),
    "top_k not a number": (dict(params={"top_k": "five"}, content=b"x"), 422, "invalid_parameter"),
    "candidate labels on a fixed-label model": (
        dict(params={"candidate_labels": "cat,dog"}, content=png_bytes((9, 9, 9))),
        422,
        "not_zero_shot",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(serve_client, red_png, case):
    client = serve_client()
    kwargs, status, code = BAD_REQUESTS[case]
    response = client.post("/v1/classify", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["error"] and isinstance(body["error"], str)
    if code is not None:
        assert body["code"] == code
    after = client.post("/v1/classify", files=_files(("red.png", red_png)))
    assert after.status_code == 200 and after.json()["results"][0]["labels"][0] == "red"


def test_truncated_jpeg_is_422(serve_client, examples_dir):
    response = serve_client().post("/v1/classify", files=_files(("half.jpg", _truncated_jpeg(examples_dir))))
    assert response.status_code == 422
    assert response.json()["code"] == "unreadable_image"
    assert "truncated" in response.json()["error"] and response.json()["error"].startswith("half.jpg: ")


def test_upload_over_the_size_limit_is_413_with_or_without_content_length(serve_client, red_png):
    client = serve_client(max_upload_bytes=1024 * 1024)
    big = b"\xff\xd8" + b"\0" * (3 * 1024 * 1024)
    response = client.post("/v1/classify", files=_files(("big.jpg", big)))
    assert response.status_code == 413 and response.json()["code"] == "upload_too_large"

    sent = 0

    def chunked():  # no Content-Length: the limit must hold while streaming
        nonlocal sent
        for _ in range(64):
            sent += 64 * 1024
            yield b"\0" * (64 * 1024)

    response = client.post("/v1/classify", content=chunked(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    assert client.post("/v1/classify", files=_files(("red.png", red_png))).status_code == 200


def test_fifty_megabyte_upload_is_refused(serve_client):
    response = serve_client().post("/v1/classify", content=b"\0" * (50 * 1024 * 1024))
    assert response.status_code == 413 and response.json()["limit_bytes"] == 20 * 1024 * 1024


def test_too_many_images_is_413(serve_client, red_png):
    client = serve_client(max_images=2)
    response = client.post("/v1/classify", files=_files(*[(f"{i}.png", red_png) for i in range(3)]))
    assert response.status_code == 413 and response.json()["code"] == "too_many_images"
    assert (
        client.post("/v1/classify", files=_files(("a.png", red_png), ("b.png", red_png))).status_code == 200
    )


def test_pixel_limit_is_configurable(serve_client):
    client = serve_client(max_pixels=100 * 100)
    small = client.post("/v1/classify", files=_files(("s.png", png_bytes((200, 0, 0), (100, 100)))))
    large = client.post("/v1/classify", files=_files(("l.png", png_bytes((200, 0, 0), (101, 100)))))
    assert small.status_code == 200
    assert large.status_code == 413 and "too large" in large.json()["error"]


def test_unknown_model_lists_the_available_names(serve_client):
    body = serve_client().post("/v1/classify?model=tiny_color", content=b"x").json()
    assert "tiny_colour" in body["models"] and "tiny_colour" in body["error"]


def test_catalogue_model_is_not_built_when_building_is_off(serve_client, monkeypatch, tmp_path):
    # An empty cache: the session's shared one holds efficientnet_lite2 once test_classify built it.
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path))
    client = serve_client(build_models=False)
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert (
        listed["efficientnet_lite2"]["state"] == "not_built" and not listed["efficientnet_lite2"]["available"]
    )
    response = client.post("/v1/classify?model=efficientnet_lite2", content=b"x")
    assert response.status_code == 404 and response.json()["code"] == "model_not_available"
    assert "sparkvision models info efficientnet_lite2" in response.json()["error"]
    assert not (tmp_path / "models" / "efficientnet_lite2").exists()


def test_catalogue_model_is_built_on_first_use(serve_client, monkeypatch, tmp_path, examples_dir):
    """Offline, from its weight package: 503 model_building while it builds, then real answers."""
    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path))
    client = serve_client()
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["efficientnet_lite0"]["state"] == "not_built" and listed["efficientnet_lite0"]["available"]
    coffee = _files(("coffee.jpg", (examples_dir / "coffee.jpg").read_bytes()))
    first = client.post("/v1/classify?model=efficientnet_lite0&top_k=1", files=coffee)
    assert first.status_code == 503 and first.json()["code"] == "model_building"
    assert first.headers["Retry-After"] == "2"
    deadline = time.monotonic() + 120
    response = first
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.post("/v1/classify?model=efficientnet_lite0&top_k=1", files=coffee)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["labels"] == ["espresso"]
    assert (tmp_path / "models" / "efficientnet_lite0" / "model.onnx").is_file()
    metrics = client.get("/metrics").text
    assert 'sparkvision_model_load_seconds{model="efficientnet_lite0"}' in metrics


def test_cached_models_can_be_chosen_by_name(serve_client, colour_model, red_png, monkeypatch, tmp_path):
    """A model in the cache is usable by name: 503 while it loads, then it answers."""
    import shutil

    from sparkvision.models.spec import ModelSpec

    monkeypatch.setenv("SPARKVISION_HOME", str(tmp_path))
    other = tmp_path / "models" / "other_colour"
    shutil.copytree(colour_model, other)
    spec = ModelSpec.load(other)
    spec.with_changes(name="other_colour", labels=("R", "G", "B")).save(other)

    client = serve_client()
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["other_colour"]["available"] and listed["other_colour"]["state"] == "unloaded"
    first = client.post("/v1/classify?model=other_colour", files=_files(("r.png", red_png)))
    if first.status_code == 503:  # loading started by this request
        assert first.json()["code"] == "model_loading" and first.headers["Retry-After"]
        deadline = time.monotonic() + 30
        while first.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
            first = client.post("/v1/classify?model=other_colour", files=_files(("r.png", red_png)))
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "other_colour" and first.json()["results"][0]["labels"][0] == "R"


# -- loading, concurrency, batching -------------------------------------------------------------------
class _GatedLoader:
    """Loads the real classifier only once released, to observe the server while a model loads."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, source, settings):
        from sparkvision.serve.registry import load_classifier

        assert self.release.wait(30)
        return load_classifier(source, settings)


def test_requests_during_model_load_get_503_then_succeed(colour_model, red_png):
    from fastapi.testclient import TestClient

    from sparkvision.serve import create_app

    loader = _GatedLoader()
    with TestClient(create_app(str(colour_model), loader=loader)) as client:
        health = client.get("/healthz")  # alive while loading: a liveness probe must not restart it
        assert health.status_code == 200 and health.json()["status"] == "loading"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {
            "ready": False,
            "model": "tiny_colour",
            "state": "loading",
        }
        busy = client.post("/v1/classify", files=_files(("red.png", red_png)))
        assert busy.status_code == 503
        assert busy.json()["code"] == "model_loading" and busy.headers["Retry-After"] == "2"
        loader.release.set()
        wait_ready(client)
        assert client.get("/readyz").json() == {"ready": True, "model": "tiny_colour", "state": "ready"}
        assert client.post("/v1/classify", files=_files(("red.png", red_png))).status_code == 200


def test_a_model_that_fails_to_load_is_reported(colour_model, red_png):
    from fastapi.testclient import TestClient

    from sparkvision.serve import create_app

    def broken(source, settings):
        raise RuntimeError("weights are damaged")

    with TestClient(create_app(str(colour_model), loader=broken)) as client:
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        health = client.get("/healthz")
        assert health.status_code == 503 and "weights are damaged" in health.json()["error"]
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/classify", files=_files(("red.png", red_png)))
        assert response.status_code == 500 and "weights are damaged" in response.json()["error"]


class _SlowClassifier:
    """Wraps a real classifier, adding a delay per call and recording batch sizes."""

    def __init__(self, inner, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.calls: list[int] = []

    @property
    def spec(self):
        return self.inner.spec

    def prepare(self, source, **options):
        return self.inner.prepare(source, **options)

    def classify_batch(self, sources, **options):
        self.calls.append(len(sources))
        time.sleep(self.delay)
        return self.inner.classify_batch(sources, **options)


def test_concurrent_requests_are_batched_and_the_loop_stays_free(serve_client):
    from sparkvision import Classifier

    holder: dict[str, _SlowClassifier] = {}

    def loader(source, settings):
        holder["clf"] = _SlowClassifier(Classifier(source), delay=0.3)
        return holder["clf"]

    client = serve_client(loader=loader, max_batch=8)
    colours = [(240, 10, 10), (10, 240, 10), (10, 10, 240)] * 4
    uploads = [png_bytes(c) for c in colours]

    def post(i: int):
        return client.post("/v1/classify?top_k=1", files=_files((f"{i}.png", uploads[i])))

    with ThreadPoolExecutor(len(uploads)) as pool:
        futures = [pool.submit(post, i) for i in range(len(uploads))]
        time.sleep(0.1)  # inference is under way (0.3 s per batch): the event loop must still answer
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health_seconds = time.perf_counter() - started
        responses = [f.result() for f in futures]

    assert health_seconds < 0.25
    for i, response in enumerate(responses):
        assert response.status_code == 200
        assert response.json()["results"][0]["labels"] == [COLOURS[i % 3]]
    calls = holder["clf"].calls
    assert sum(calls) == len(uploads)
    assert len(calls) < len(uploads) and max(calls) > 1  # several requests shared one model call
    assert max(calls) <= 8
    stats = client.get("/healthz").json()["batching"]["tiny_colour"]
    assert stats["images"] == len(uploads) and stats["largest_batch"] == max(calls)


# -- zero-shot plumbing -------------------------------------------------------------------------------
class _ZeroShotStub:
    """A zero-shot 'model': scores the candidate labels by their length (longest first)."""

    def __init__(self) -> None:
        from sparkvision.models.spec import ModelSpec
        from sparkvision.preprocess import PreprocessSpec

        self.spec = ModelSpec(
            name="zs_stub", family="clip", task="zero-shot", preprocess=PreprocessSpec(size=32)
        )
        self.seen_labels: list[list[str]] = []

    def prepare(self, source, **options):
        from sparkvision import Classifier

        return Classifier("no-model-file-needed", self.spec).prepare(source, **options)

    def classify_batch(self, sources, *, top_k, candidate_labels=None, **options):
        assert candidate_labels is not None, "candidate labels must reach the classifier"
        labels = candidate_labels
        if "forbidden" in labels:
            from sparkvision.errors import ConfigError

            raise ConfigError("the label 'forbidden' is refused by this model")
        self.seen_labels.append(list(labels))
        order = sorted(range(len(labels)), key=lambda i: -len(labels[i]))[:top_k]
        scores = [len(labels[i]) / sum(map(len, labels)) for i in order]
        return [
            Prediction(
                path=None,
                labels=tuple(labels[i] for i in order),
                scores=tuple(scores),
                class_ids=tuple(order),
            )
            for _ in sources
        ]


def test_zero_shot_candidate_labels_are_passed_through(serve_client, red_png):
    stub = _ZeroShotStub()
    client = serve_client(loader=lambda source, settings: stub)
    missing = client.post("/v1/classify", files=_files(("r.png", red_png)))
    assert missing.status_code == 422 and missing.json()["code"] == "candidate_labels_required"

    repeated = client.post(
        "/v1/classify",
        params={"candidate_labels": "cat, a cup of coffee,dog,cat", "top_k": 2},
        files=_files(("r.png", red_png)),
    )  # the shared policy (sparkvision.options): a repeated label is an error on every front
    assert repeated.status_code == 422 and "repeated: cat" in repeated.json()["error"]
    response = client.post(
        "/v1/classify",
        params={"candidate_labels": "cat, a cup of coffee,dog,", "top_k": 2},
        files=_files(("r.png", red_png)),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert stub.seen_labels == [["cat", "a cup of coffee", "dog"]]  # trimmed, blanks skipped, in order
    assert body["candidate_labels"] == ["cat", "a cup of coffee", "dog"]
    assert body["results"][0]["labels"] == ["a cup of coffee", "cat"]
    as_field = client.post(
        "/v1/classify", data={"candidate_labels": "x,yy"}, files=_files(("r.png", red_png))
    )
    assert as_field.json()["results"][0]["labels"][0] == "yy"
    too_many = client.post(
        "/v1/classify", params={"candidate_labels": "a,b", "top_k": 3}, files=_files(("r.png", red_png))
    )
    assert too_many.status_code == 422 and "candidate labels" in too_many.json()["error"]
    refused = client.post(
        "/v1/classify", params={"candidate_labels": "a,forbidden"}, files=_files(("r.png", red_png))
    )
    assert refused.status_code == 422 and "refused by this model" in refused.json()["error"]


# -- API key ------------------------------------------------------------------------------------------
def test_api_key(serve_client, red_png):
    client = serve_client(api_key="s3cret")
    assert client.post("/v1/classify", files=_files(("r.png", red_png))).status_code == 401
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    ok = client.post("/v1/classify", headers={"X-API-Key": "s3cret"}, files=_files(("r.png", red_png)))
    assert ok.status_code == 200
    for open_path in ("/healthz", "/", "/docs", "/static/app.js", "/openapi.json"):
        assert client.get(open_path).status_code == 200, open_path


def test_no_key_means_open(serve_client):
    assert serve_client().get("/v1/models").status_code == 200


# -- page, docs, OpenAPI ------------------------------------------------------------------------------
def test_page_docs_and_openapi_are_served_and_offline(serve_client):
    from sparkvision.serve.app import STATIC_DIR

    client = serve_client()
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text and client.get(asset).status_code == 200
    assert 'aria-live="polite"' in page.text and '<label for="model">' in page.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text
    spec = client.get("/openapi.json").json()
    assert {"/v1/classify", "/v1/models", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body
    for path in STATIC_DIR.iterdir():  # no CDN, no external fonts or scripts: the page works offline
        text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


def test_unknown_route_is_a_json_404(serve_client):
    response = serve_client().get("/v2/nothing")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_settings_are_checked():
    from sparkvision.errors import ConfigError
    from sparkvision.serve import ServeSettings

    for bad in ({"max_batch": 0}, {"max_upload_bytes": -1}, {"max_wait_ms": -1}, {"api_key": "  "}):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)


def test_bomb_is_small_on_the_wire_and_huge_when_decoded():
    data = png_bomb()
    assert len(data) < 200_000
    assert struct.unpack(">II", data[16:24]) == (20_000, 20_000)  # IHDR: 400 megapixels
    assert len(zlib.decompress(data[41:-12])) == 20_000 * (1 + 20_000 // 8)  # the IDAT really holds them
