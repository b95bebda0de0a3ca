"""The playground page (`/`) in a real headless browser: Debian's chromium driven by playwright, against a real
`zerosearch serve` (scripted backend: its useful sets have one document that contains the answer and others
that do not; `[leak]` makes a noisy set leak it). No browser is downloaded: the system chromium is used."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ServeProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-packages)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")


@pytest.fixture(scope="module")
def server():
    srv = ServeProcess("--backend", "scripted", env={"ZS_REDIS_URL": ""}, startup_s=60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            yield page
        finally:
            browser.close()


def search(page, *, query: str, question: str, answer: str, noise: str) -> None:
    page.fill("#query", query)
    page.fill("#question", question)
    page.fill("#answer", answer)
    page.eval_on_selector("#noise", "(node, value) => { node.value = value; }", noise)
    page.click("#go")
    page.wait_for_selector("#verification:not(:empty)", timeout=20_000)


def test_the_page_shows_which_documents_contain_the_answer_and_the_label_check(page):
    search(page, query="who wrote hamlet", question="Who wrote Hamlet?", answer="Shakespeare", noise="0")
    cards = page.locator("#results .doc")
    assert cards.count() == 5
    marks = [cards.nth(i).locator(".answer").inner_text() for i in range(5)]
    assert marks == ["contains answer"] + ["no answer"] * 4
    assert "Shakespeare" in cards.nth(0).locator(".snippet").inner_text()
    assert page.locator("#verification").inner_text().startswith("Label check: passed")
    assert page.locator("#verification").get_attribute("class") == "passed"
    assert "5 documents, useful" in page.locator("#status").inner_text()


def test_a_repaired_noisy_set_is_shown_as_repaired(page):
    search(page, query="who wrote hamlet [leak]", question="Who wrote Hamlet?", answer="Shakespeare", noise="1")
    cards = page.locator("#results .doc")
    assert cards.count() == 5
    assert [cards.nth(i).locator(".answer").inner_text() for i in range(5)] == ["no answer"] * 5
    assert [cards.nth(i).locator(".label").inner_text().lower() for i in range(5)] == ["noisy"] * 5
    verification = page.locator("#verification").inner_text()
    assert verification.startswith("Label check: repaired") and "regenerating 5 document" in verification


def test_without_an_answer_the_page_shows_no_marks(page):
    page.fill("#query", "capital of peru")
    page.fill("#question", "")
    page.fill("#answer", "")
    page.click("#go")
    page.wait_for_function("document.querySelectorAll('#results .doc').length === 5", timeout=20_000)
    assert page.locator("#results .answer").count() == 0
    assert page.locator("#verification").inner_text() == ""
