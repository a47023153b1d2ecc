"""No user text is ever rendered as HTML: a static scan of every UI source file for raw-HTML calls whose
content is not a constant, and the pages rendered with hostile names, captions and posts."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.datasets import captions, datasets
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.models import Job, JobStatus
from core.publishing import posts
from tests.apptest import open_page
from tests.conftest import ROOT
from tests.factories import image_bytes

UI_SOURCES = [ROOT / "app.py", ROOT / "server.py", *sorted((ROOT / "pages").rglob("*.py")),
              *sorted((ROOT / "ui").rglob("*.py"))]
# Calls that render their argument as HTML (st.html, components.html, st.components.v1.html, and any
# Streamlit call given unsafe_allow_html=True).
HTML_CALLS = {"html"}
SCRIPT = "<script>alert(1)</script>"


# --- the static scan ---------------------------------------------------------------------------------------------


def _constant(node: ast.expr) -> bool:
    """A value built only from literals: no names, calls or attribute reads that could carry user data."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes | bool | int | float) or node.value is None
    if isinstance(node, ast.JoinedStr):  # an f-string is constant only if every piece is
        return all(isinstance(v, ast.Constant) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _constant(node.left) and _constant(node.right)
    if isinstance(node, ast.Tuple | ast.List):
        return all(_constant(e) for e in node.elts)
    return False


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def html_violations(source: str, filename: str = "<source>") -> list[str]:
    """Every call that renders HTML from something other than constants, as "file:line: what"."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        raw_html = next((k for k in node.keywords if k.arg == "unsafe_allow_html"), None)
        renders_html = _callee(node) in HTML_CALLS or (
            raw_html is not None and not (isinstance(raw_html.value, ast.Constant) and raw_html.value.value is False))
        if node.keywords and any(k.arg is None for k in node.keywords):  # **kwargs could switch HTML on
            renders_html = renders_html or _callee(node) in {"markdown", "write", "caption", "html"}
        if not renders_html:
            continue
        arguments = [*node.args, *(k.value for k in node.keywords if k.arg not in ("unsafe_allow_html",))]
        if not all(_constant(a) for a in arguments):
            problems.append(f"{filename}:{node.lineno}: {_callee(node)}(…) renders non-constant HTML")
    return problems


@pytest.mark.parametrize("bad", [
    "st.markdown(f'<b>{name}</b>', unsafe_allow_html=True)",
    "st.markdown(caption, unsafe_allow_html=True)",
    "st.write('<b>' + name + '</b>', unsafe_allow_html=True)",
    "st.html(post.caption)",
    "components.html(f'<div>{x}</div>', height=100)",
    "st.components.v1.html(page)",
    "st.caption(text, unsafe_allow_html=flag)",
    "st.markdown(text, **options)",
])
def test_the_scan_catches_html_built_from_data(bad):
    assert html_violations(bad), bad


@pytest.mark.parametrize("fine", [
    "st.markdown(user_text)",
    "st.markdown('<div class=\"gap\"></div>', unsafe_allow_html=True)",
    "st.html('<hr>')",
    "st.markdown(text, unsafe_allow_html=False)",
    "st.text(SCRIPT)",
])
def test_the_scan_allows_constants_and_escaped_text(fine):
    assert html_violations(fine) == []


def test_no_ui_source_renders_html_built_from_data():
    assert len(UI_SOURCES) > 20, "the scan found the UI sources"
    problems = [p for path in UI_SOURCES for p in html_violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert problems == []


# --- the pages, rendered with hostile text -------------------------------------------------------------------------


def _walk(node) -> Iterator:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _assert_no_html(at, *, expect_text: str | None = None) -> None:
    """No element of the page renders HTML; the hostile text, where shown, is in escaped elements."""
    nodes = [n for root in (at.main, at.sidebar) for n in _walk(root)]
    assert not [n for n in nodes if getattr(n, "type", "") == "html"], "an st.html element was rendered"
    for markdown in at.get("markdown") + at.get("caption") + at.get("text"):
        proto = markdown.proto
        assert not getattr(proto, "allow_html", False), f"HTML allowed in {markdown.value[:80]!r}"
    if expect_text is not None:
        shown = [str(getattr(n, "value", "")) for n in nodes] + [str(getattr(n, "label", "")) for n in nodes]
        shown += [str(o) for n in nodes for o in (getattr(n, "options", None) or [])]
        assert any(expect_text in s for s in shown), f"{expect_text!r} is not shown literally anywhere"


@pytest.fixture
def hostile(studio):
    dataset = datasets.create_dataset(name=f"Ava {SCRIPT}", trigger_word="ohwx")
    datasets.import_files(dataset.id, [("a.png", image_bytes(seed=3))])
    image = datasets.all_images(dataset.id)[0]
    captions.save_caption(image.id, f"{SCRIPT} on a beach")
    post = posts.create_post(platform="instagram", scheduled_at=datetime.now(UTC) + timedelta(days=2),
                             caption=f"Run day {SCRIPT}", title=SCRIPT)
    job = jobs.create_job("sleep", {"seconds": 1})
    with session_scope() as session:
        failed = session.get(Job, job.id)
        failed.status, failed.error = JobStatus.FAILED, f"RuntimeError: {SCRIPT}"
    return {"dataset": dataset, "post": post, "job": job}


@pytest.mark.parametrize(("page", "shown"), [
    ("pages/datasets.py", f"{SCRIPT} on a beach"),
    ("pages/captions.py", f"{SCRIPT} on a beach"),
    ("pages/calendar.py", None),
    ("pages/jobs.py", None),
    ("pages/home.py", None),
    ("pages/training.py", None),
])
def test_hostile_text_renders_as_literal_text(hostile, page, shown):
    at = open_page(page)
    _assert_no_html(at, expect_text=shown)


def test_a_hostile_post_opened_in_the_calendar_editor_stays_text(hostile):
    from tests.apptest import click

    post = hostile["post"]
    at = click(open_page("pages/calendar.py"), f"calendar.open.{post.id}")
    _assert_no_html(at, expect_text=f"Run day {SCRIPT}")


def test_a_hostile_job_error_on_the_jobs_page_stays_text(hostile):
    at = open_page("pages/jobs.py")
    at.selectbox(key="jobs.open").set_value(hostile["job"].id[:8]).run()
    _assert_no_html(at, expect_text=SCRIPT)
