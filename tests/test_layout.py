"""Every page reads well on a 1280-px laptop and a 1920-px screen (#27): with the demo's data present, no
visible button, select, toggle or tab shows its label cut (an ellipsis, or text wider than its box) or
squeezed onto more than two lines, no page scrolls sideways, and none shows an exception.

One demo run, one browser, one tab: each page is loaded once and checked at both widths (a resize
needs no rerun: the layout is CSS). With STUDIO_SCREENSHOTS_DIR set (scripts/screenshots), the checked
views are the docs' pictures of the pages: ``<page>-1280.png`` and ``<page>-1920.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from core.automation import demo, pipelines
from core.jobs import queue
from core.training.runs import get_lora
from tests.browser import WAIT_MS, by_key, screenshot, settle
from tests.conftest import wait_until
from tests.test_browser import browser, demo_server, tiny_sd15  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]

WIDTHS = ({"width": 1280, "height": 800}, {"width": 1920, "height": 1080})
MAX_LINES = 2

# Reads the page as a user sees it: every visible control whose label is cut or squeezed, and any
# sideways scroll of the page. Text inside a control is measured where it is drawn: an element with its
# own text must not be wider inside than its box (scrollWidth > clientWidth), and the text's line boxes
# (Range.getClientRects) must sit on at most MAX_LINES lines. Inputs (a select's value or placeholder)
# are measured with the input's own font against its content box. Material icons are glyphs, not text.
_PROBLEMS = """(maxLines) => {
    const CONTROLS = 'button, [role=tab], [data-testid=stSelectbox], [data-testid=stMultiSelect], '
        + '[data-testid=stCheckbox], [data-testid=stRadio], [data-testid=stPopover], [data-testid=stLinkButton], '
        + '[data-testid=stDownloadButton], [data-testid=stPageLink], [data-testid=stWidgetLabel]';
    const canvas = document.createElement('canvas').getContext('2d');
    const shown = el => {
        const box = el.getBoundingClientRect();
        return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
    };
    const isIcon = el => el.closest('[data-testid=stIconMaterial], [data-testid=stIconEmoji]') !== null;
    const ownText = el => Array.from(el.childNodes)
        .filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent).join('').trim();
    const lines = el => {
        const range = document.createRange();
        range.selectNodeContents(el);
        const tops = [];
        for (const rect of range.getClientRects()) {
            if (rect.width < 1 || rect.height < 1) continue;
            if (!tops.some(top => Math.abs(top - rect.top) < rect.height / 2)) tops.push(rect.top);
        }
        return tops.length;
    };
    const problems = [];
    const seen = new Set();
    const report = (control, text, why) => {
        const key = why + '|' + text;
        if (seen.has(key)) return;
        seen.add(key);
        const name = control.getAttribute('data-testid') || control.tagName.toLowerCase();
        problems.push(`${why}: "${text.slice(0, 60)}" (${name})`);
    };
    for (const control of document.querySelectorAll(CONTROLS)) {
        if (!shown(control)) continue;
        for (const el of [control, ...control.querySelectorAll('*')]) {
            if (!shown(el) || isIcon(el)) continue;
            const style = getComputedStyle(el);
            if (el.tagName === 'INPUT') {
                if (el.type === 'checkbox' || el.type === 'radio' || el.type === 'hidden') continue;
                const text = el.value || el.placeholder || '';
                if (!text) continue;
                canvas.font = style.font;
                const room = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
                if (canvas.measureText(text).width > room + 1) report(control, text, 'cut');
                continue;
            }
            // A box that clips (an ellipsis, or hidden overflow) cuts the text of everything inside it.
            const clips = style.textOverflow === 'ellipsis' || style.overflowX !== 'visible';
            const label = (el.innerText || '').trim();
            if (label && clips && style.display !== 'inline' && el.scrollWidth > el.clientWidth + 1
                    && !el.querySelector('input, textarea')) report(control, label, 'cut');
            const text = ownText(el);
            if (!text) continue;
            const count = lines(el);
            if (count > maxLines) report(control, text, `on ${count} lines`);
        }
    }
    for (const error of document.querySelectorAll('[data-testid=stException]'))
        problems.push(`an exception: ${(error.innerText || '').split('\\n')[0].slice(0, 120)}`);
    const scrolled = [document.documentElement, ...document.querySelectorAll(
        '[data-testid=stAppViewContainer], [data-testid=stMain], [data-testid=stMainBlockContainer]')]
        .filter(el => el.scrollWidth > el.clientWidth + 1);
    for (const el of scrolled.slice(0, 1))
        problems.push(`the page scrolls sideways (${el.scrollWidth} px in ${el.clientWidth} px)`);
    return problems;
}"""


@dataclass(frozen=True)
class View:
    """One page as a user opens it: its path, the heading that says it is there, an optional step (a
    click) that brings up the part to check, and the heading its screenshot starts at (its key part)."""

    name: str
    path: str
    heading: str
    then: Callable[[Page], None] | None = None
    focus: str | None = None
    shows: Callable[[Page], None] | None = None  # what the page must show people (checked once)
    reload: bool = False  # a component (the calendar's iframe) keeps the width it was drawn at: load it again


def _section(label: str) -> Callable[[Page], None]:
    def open_section(page: Page) -> None:
        by_key(page, "training.section").get_by_text(label, exact=True).click()
        settle(page)

    return open_section


def _stages_as_rows(page: Page) -> None:
    """The demo pipeline reads as rows: each stage with its jobs as links and its images as thumbnails;
    the API's JSON only after the "Raw JSON" toggle."""
    for stage in ("captions", "training", "generation", "video", "post"):
        expect(page.get_by_text(stage, exact=True).first).to_be_visible()
    assert page.get_by_role("link", name=re.compile(r"^job [0-9a-f]{8}$")).count() >= 5
    assert page.locator("[data-testid=stImage]").count() >= 4, "the generation stage's thumbnails"
    expect(page.locator("[data-testid=stJson]")).to_have_count(0)
    page.get_by_text("Raw JSON", exact=True).click()
    expect(page.locator("[data-testid=stJson]")).to_have_count(1)
    page.get_by_text("Raw JSON", exact=True).click()
    expect(page.locator("[data-testid=stJson]")).to_have_count(0)


def _views(run_id: str) -> list[View]:
    return [
        View("home", "/", "InfluencerAI Studio"),
        View("characters", "/characters", "Characters"),
        View("datasets", "/datasets", "Datasets"),
        View("captions", "/captions", "Captions"),
        View("training-wizard", "/training", "Training"),
        View("training-run", f"/training?run={run_id}", "Training"),
        View("training-configs", "/training", "Training", then=_section("Configs")),
        View("generate", "/generate", "Generate"),
        View("assets", "/assets", "Assets"),
        View("videos", "/videos", "Videos"),
        View("calendar", "/calendar", "Calendar", reload=True),
        View("accounts", "/accounts", "Social accounts"),
        View("automation", "/automation", "Automation", focus="Pipelines", shows=_stages_as_rows),
        View("jobs", "/jobs", "Jobs"),
        View("monitoring", "/monitoring", "Monitoring"),
    ]


def _open(page: Page, base: str, view: View) -> None:
    page.goto(f"{base}{view.path}")
    page.get_by_role("heading", name=view.heading).first.wait_for()
    settle(page)
    if view.then is not None:
        view.then(page)
    if view.focus is not None:
        page.get_by_role("heading", name=view.focus).first.evaluate("el => el.scrollIntoView({block: 'start'})")


def _resize(page: Page, size: dict[str, int]) -> None:
    page.set_viewport_size(size)
    # Two frames: React lays the page out again for the new width before anything is measured.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    settle(page)


def test_every_page_with_the_demo_data_fits_a_laptop_and_a_wide_screen(demo_server, workers, browser):  # noqa: F811
    workers.worker("gpu,cpu,default", threads=3)
    wait_until(queue.list_workers, 60, 0.2, what="the worker to announce itself")  # else the demo refuses to start
    demo.run_demo(timeout_s=300)  # raises naming the stage that failed
    [pipeline] = pipelines.list_pipelines(kinds=["demo"]).items
    run_id = get_lora(pipeline.results["training"]["loraId"]).job_id

    page = browser.new_page(viewport=WIDTHS[0])
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    for view in _views(run_id):
        page.set_viewport_size(WIDTHS[0])
        _open(page, demo_server, view)
        if view.shows is not None:
            view.shows(page)
            settle(page)
        for size in WIDTHS:
            _resize(page, size)
            if view.reload and size is not WIDTHS[0]:
                _open(page, demo_server, view)
            where = f"{view.name} at {size['width']}×{size['height']}"
            problems += [f"{where}: {problem}" for problem in page.evaluate(_PROBLEMS, MAX_LINES)]
            screenshot(page, f"{view.name}-{size['width']}.png")
    page.close()
    assert not problems, "controls squeezed or cut:\n" + "\n".join(problems)
