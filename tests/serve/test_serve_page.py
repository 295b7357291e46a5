"""The page in a real browser (the system Chromium, as in test_serve_e2e.py): layout with the longest
ImageNet labels on a phone and on a desktop, a file that is not an image, and a catalogue model built
on first use.

The server is ``sparkvision serve`` in a subprocess over a tiny colour model whose three labels are
the three longest ImageNet labels, with its own empty model cache (so a catalogue model really is
built when the page asks for it).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image
from serve_helpers import CHROMIUM, CHROMIUM_ARGS, served, write_colour_model

pytestmark = pytest.mark.slow


def _longest_imagenet_labels(count: int = 3) -> tuple[str, ...]:
    from sparkvision.labels import imagenet1k_labels

    return tuple(sorted(imagenet1k_labels(), key=len, reverse=True)[:count])


def _serve(root: Path, *arguments: str):
    """``sparkvision serve ARGUMENTS`` with its own empty model cache under ``root``; yields its URL."""
    return served(
        list(arguments), root / "server.log", env={**os.environ, "SPARKVISION_HOME": str(root / "home")}
    )


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    from sparkvision.models.spec import ModelSpec

    root = tmp_path_factory.mktemp("page")
    model = write_colour_model(root / "long_labels", name="long_labels")
    ModelSpec.load(model).with_changes(labels=_longest_imagenet_labels()).save(model)
    with _serve(root, "-m", str(model)) as url:
        yield url


@pytest.fixture(scope="module")
def caption_server(tmp_path_factory, caption_checkpoint):
    """A server whose default model is a tiny captioning model, with a classifier preloaded beside it."""
    from click.testing import CliRunner

    from sparkvision.cli import cli

    root = tmp_path_factory.mktemp("caption-page")
    captioner = root / "tiny_captioner"
    result = CliRunner().invoke(
        cli, ["import", str(caption_checkpoint), "-n", "tiny_captioner", "-o", str(captioner)]
    )
    assert result.exit_code == 0, result.output
    colours = write_colour_model(root / "colours", name="colours")
    with _serve(root, "-m", str(captioner), "--preload", str(colours)) as url:
        yield url, captioner


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium package is not installed (apt-get install chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


_LAYOUT = """() => {
    const doc = document.documentElement;
    const box = (el) => el.getBoundingClientRect();
    const cards = [...document.querySelectorAll('#results > li')].map((card) => {
        const c = box(card);
        const inner = [...card.querySelectorAll('.label-name, .label-pct, .bar')].map((el) => {
            const b = box(el);
            return {cls: el.className, left: b.left, right: b.right, width: b.width};
        });
        return {left: c.left, right: c.right, inner};
    });
    return {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, cards};
}"""


@pytest.mark.parametrize("viewport", [(390, 844), (1280, 800)], ids=["phone-390px", "desktop-1280px"])
def test_no_horizontal_overflow_with_the_longest_labels(browser, page_server, tmp_path, viewport):
    width, height = viewport
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(60_000)
    page.goto(page_server)
    page.get_by_text("Ready: model long_labels").wait_for()
    colours = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]
    page.set_input_files("#file-input", [_png(tmp_path / f"{i}.png", c) for i, c in enumerate(colours)])
    page.wait_for_function("document.querySelectorAll('#results > li[data-state=done]').length === 3")
    longest = _longest_imagenet_labels()
    assert page.locator("#results .label-name").first.inner_text() == longest[0]  # red wins on a red image
    layout = page.evaluate(_LAYOUT)
    assert layout["scrollWidth"] <= layout["clientWidth"] == width, layout
    for card in layout["cards"]:
        assert card["left"] >= 0 and card["right"] <= width, card
        for element in card["inner"]:
            assert element["width"] > 0, element  # the percentage and the bar stay visible
            assert card["left"] <= element["left"] and element["right"] <= card["right"], (element, card)
    page.close()


def test_an_undecodable_file_gets_a_readable_message_and_no_broken_image(browser, page_server, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_default_timeout(60_000)
    page.goto(page_server)
    page.get_by_text("Ready:").wait_for()
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are my notes, not a photo\n" * 20)
    page.set_input_files("#file-input", [notes])
    card = page.locator("#results > li", has_text="notes.jpg")
    card.and_(page.locator("[data-state=failed]")).wait_for()
    assert card.locator(".state").inner_text() == "This file is not an image the server can read."
    assert "not a recognised image" in card.locator(".meta").inner_text()  # the server's own words
    page.wait_for_function("document.querySelector('#results .thumb').hidden")
    assert card.locator(".thumb").is_hidden()  # no broken-image icon …
    assert card.locator(".no-preview").is_visible()  # … a plain box instead
    assert page.locator("#status").inner_text() == "0 images classified, 1 failed."
    page.close()


def test_a_catalogue_model_is_built_on_first_use_from_the_page(browser, page_server, examples_dir):
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(page_server)
    page.get_by_text("Ready:").wait_for()
    to_build = page.locator("#model optgroup[label='Built on first use'] option").all_inner_texts()
    assert "efficientnet_lite1" in to_build and "long_labels (default)" not in to_build
    page.get_by_label("Model", exact=True).select_option("efficientnet_lite1")
    assert "built on the server when first used" in page.locator("#model-info").inner_text()
    page.set_input_files("#file-input", [examples_dir / "coffee.jpg"])
    page.get_by_text("Building model efficientnet_lite1 on the server").first.wait_for()
    card = page.locator("#results > li", has_text="coffee.jpg")
    card.and_(page.locator("[data-state=done]")).wait_for()
    assert card.locator(".label-name").first.inner_text() == "espresso"
    assert card.locator(".meta").inner_text().startswith("efficientnet_lite1")
    # Once built it is an ordinary model: listed with the others, no longer "built on first use".
    page.wait_for_function(
        "![...document.querySelectorAll('#model optgroup option')].some(o => o.value === 'efficientnet_lite1')"
    )
    page.close()


def test_a_captioning_model_shows_captions_and_a_classifier_labels(browser, caption_server, examples_dir):
    import sparkvision

    url, captioner = caption_server
    photo = examples_dir / "coffee.jpg"
    expected = next(iter(sparkvision.load(captioner).caption(photo))).caption
    assert expected  # the tiny model's special tokens are distinct, so its captions are not empty

    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_text("Ready: model tiny_captioner. Add images to caption them.").wait_for()
    assert "captioning" in page.locator("#model-info").inner_text()
    assert page.locator("#top-k").is_hidden()  # no "labels per image" for captions
    page.set_input_files("#file-input", [photo])
    card = page.locator("#results > li", has_text="coffee.jpg")
    card.and_(page.locator("[data-state=done]")).wait_for()
    assert card.locator(".state").inner_text() == expected  # the same words as the Python API
    assert card.locator(".meta").inner_text().startswith("tiny_captioner")
    assert card.locator(".label-row").count() == 0
    assert page.locator("#status").inner_text() == "1 image captioned."

    # Switching to the classifier classifies the same card again: labels, no caption.
    page.get_by_label("Model", exact=True).select_option("colours")
    assert page.locator("#top-k").is_visible()
    page.wait_for_function(
        "document.querySelector('#results > li[data-state=done] .meta').textContent.startsWith('colours')"
    )
    assert card.locator(".label-row").count() == 3
    assert card.locator(".captions").is_hidden()
    assert page.locator("#status").inner_text() == "1 image classified."
    page.close()
