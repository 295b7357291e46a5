"""End to end on the real EfficientNet-Lite0: the API against the CLI, and the page in a real browser.

The browser test starts ``sparkvision serve`` as a subprocess on a free port, drives the system
Chromium (Debian's ``chromium`` package) with Playwright, uploads two example photos through the page
and checks the labels it shows. Set ``SPARKVISION_UPDATE_SCREENSHOT=1`` to refresh
``docs/serve-page.png`` (the README's screenshot) from the same run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import CHROMIUM, CHROMIUM_ARGS, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CAT_LABELS = ("tiger cat", "Egyptian cat", "tabby, tabby cat")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite0_client(lite0):
    """The service over the real default model (built into the test cache by the ``lite0`` fixture)."""
    from fastapi.testclient import TestClient

    from sparkvision.serve import create_app

    with TestClient(create_app("efficientnet_lite0")) as client:
        wait_ready(client, timeout=300)
        yield client


def test_real_photos_through_the_api(lite0_client, examples_dir):
    files = [
        ("file", (name, (examples_dir / name).read_bytes(), "image/jpeg"))
        for name in ("chelsea.jpg", "coffee.jpg")
    ]
    body = lite0_client.post("/v1/classify?top_k=3", files=files).json()
    cat, coffee = body["results"]
    assert body["model"] == "efficientnet_lite0"
    assert cat["path"] == "chelsea.jpg" and cat["labels"][0] in CAT_LABELS
    assert set(cat["labels"]) <= set(CAT_LABELS) | {"lynx, catamount"}
    assert coffee["path"] == "coffee.jpg" and coffee["labels"][0] == "espresso"
    assert coffee["scores"][0] > 0.5


def test_api_records_equal_the_cli_json(lite0_client, examples_dir):
    from click.testing import CliRunner

    from sparkvision.cli import cli

    paths = [examples_dir / name for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg")]
    result = CliRunner().invoke(cli, ["classify", *map(str, paths), "--format", "json", "-k", "5", "-q"])
    assert result.exit_code == 0, result.output
    cli_records = json.loads(result.stdout)
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    api_records = lite0_client.post("/v1/classify?top_k=5", files=files).json()["results"]
    for from_cli, from_api, path in zip(cli_records, api_records, paths):
        assert from_api["path"] == path.name
        assert {**from_cli, "path": path.name} == from_api


# -- the page in a real browser ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def served_url(lite0, tmp_path_factory):
    """``sparkvision serve`` in a subprocess on a free port, with the tiny colour model preloaded."""
    from serve_helpers import served, write_colour_model

    colour = write_colour_model(tmp_path_factory.mktemp("served") / "tiny_colour")
    with served(["--preload", str(colour)], tmp_path_factory.mktemp("served") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium package is not installed (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def _pixel_std(png_path: Path) -> float:
    from PIL import Image

    with Image.open(png_path) as img:
        return float(np.asarray(img.convert("L"), dtype=np.float32).std())


def test_page_classifies_two_photos_in_a_real_browser(browser, served_url, examples_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.set_default_timeout(60_000)
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
    page.goto(served_url)

    page.get_by_text("Ready: model efficientnet_lite0").wait_for()
    assert page.get_by_label("Model", exact=True).input_value() == "efficientnet_lite0"
    options = page.locator("#model option").all_inner_texts()
    assert "efficientnet_lite0 (default)" in options and "tiny_colour" in options
    assert page.get_by_label("Candidate labels").is_hidden()  # not a zero-shot model

    page.set_input_files("#file-input", [examples_dir / "chelsea.jpg", examples_dir / "coffee.jpg"])
    cards = page.locator("#results > li")
    page.wait_for_function(
        "document.querySelectorAll('#results > li[data-state=done]').length === 2", timeout=120_000
    )
    assert cards.count() == 2
    cat, coffee = cards.nth(0), cards.nth(1)
    assert cat.locator(".name").inner_text() == "chelsea.jpg"
    assert cat.locator(".label-name").first.inner_text() in CAT_LABELS
    assert coffee.locator(".label-name").first.inner_text() == "espresso"
    pct = coffee.locator(".label-pct").first.inner_text()
    assert re.fullmatch(r"\d{1,3}\.\d%", pct) and float(pct[:-1]) > 50
    assert coffee.locator(".label-row").count() == 5  # the default top-k
    assert "efficientnet_lite0" in coffee.locator(".meta").inner_text()
    assert re.search(r"\d+ ms", coffee.locator(".meta").inner_text())
    assert page.locator("#status").inner_text() == "2 images classified."
    assert page.locator("#results").get_attribute("aria-live") == "polite"
    bar_width = coffee.locator(".bar > span").first.evaluate("el => el.getBoundingClientRect().width")
    assert bar_width > 0

    screenshot = tmp_path / "serve-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000 and _pixel_std(screenshot) > 10.0  # not blank
    if os.environ.get("SPARKVISION_UPDATE_SCREENSHOT") == "1":
        target = ROOT / "docs" / "serve-page.png"
        target.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(target), full_page=False)
        _shrink_png(target)

    # The model switcher re-runs the shown images with the chosen model.
    page.get_by_label("Model", exact=True).select_option("tiny_colour")
    page.wait_for_function(
        "[...document.querySelectorAll('#results .meta')].every(m => m.textContent.startsWith('tiny_colour'))"
    )
    assert cards.nth(0).locator(".label-name").first.inner_text() in ("red", "green", "blue")
    assert not [m for m in messages if m.startswith(("error", "pageerror"))], messages
    page.close()


def test_page_drop_keyboard_and_errors(browser, served_url, examples_dir):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(served_url)
    page.get_by_text("Ready:").wait_for()

    # Keyboard: the file picker, the model switcher and the options are reachable with Tab.
    focused = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert {"model", "top-k", "file-input"} <= set(focused)

    # Drop one real photo and one text file on the drop zone.
    rocket = list((examples_dir / "rocket.jpg").read_bytes())
    page.evaluate(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "rocket.jpg", {type: "image/jpeg"}));
            dt.items.add(new File(["not an image"], "notes.jpg", {type: "image/jpeg"}));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        rocket,
    )
    page.wait_for_function(
        "document.querySelectorAll('#results > li[data-state]').length === 2", timeout=120_000
    )
    assert page.locator("#results > li").count() == 2  # each dropped file once
    rocket_card = page.locator("#results > li", has_text="rocket.jpg")
    notes_card = page.locator("#results > li", has_text="notes.jpg")
    assert rocket_card.get_attribute("data-state") == "done"
    assert "missile" in rocket_card.locator(".label-name").first.inner_text()
    assert notes_card.get_attribute("data-state") == "failed"
    assert notes_card.locator(".state").inner_text() == "This file is not an image the server can read."
    assert "not a recognised image" in notes_card.locator(".meta").inner_text()
    assert page.locator("#status").inner_text() == "1 image classified, 1 failed."

    # Paste an image (as from the clipboard).
    coffee = list((examples_dir / "coffee.jpg").read_bytes())
    page.evaluate(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "pasted-coffee.jpg", {type: "image/jpeg"}));
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true}));
        }""",
        coffee,
    )
    pasted = page.locator("#results > li", has_text="pasted-coffee.jpg")
    pasted.and_(page.locator("[data-state=done]")).wait_for()
    assert pasted.locator(".label-name").first.inner_text() == "espresso"
    page.close()


def test_camera_capture_is_classified(playwright, served_url):
    """Chromium's fake camera (a generated test pattern) stands in for a webcam."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(served_url)
        page.get_by_text("Ready:").wait_for()
        page.get_by_role("button", name="Use the camera").click()
        page.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
        page.get_by_role("button", name="Take photo").click()
        card = page.locator("#results > li", has_text="camera-")
        card.and_(page.locator("[data-state=done]")).wait_for()
        assert card.locator(".label-row").count() == 5
        page.get_by_role("button", name="Close camera").click()
        assert page.locator("#camera").is_hidden()
    finally:
        browser.close()


def _shrink_png(path: Path) -> None:
    """Keep the committed screenshot small: a palette PNG is a fraction of the size."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    assert path.stat().st_size < 300_000


def test_docs_page_renders_the_api_offline(browser, served_url):
    page = browser.new_page()
    page.goto(served_url + "docs")
    page.locator(".endpoint .path", has_text="/v1/classify").wait_for()
    paths = page.locator(".endpoint .path").all_inner_texts()
    assert {"/v1/classify", "/v1/models", "/healthz"} <= set(paths)
    classify = page.locator(".endpoint", has_text="/v1/classify")
    assert "curl -F file=@cat.jpg" in classify.locator("pre").first.inner_text()
    assert "top_k" in classify.locator("table").inner_text()
    page.close()
