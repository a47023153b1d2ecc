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


# --- no user text rendered as Markdown -------------------------------------------------------------------------
#
# Streamlit renders Markdown in messages, captions, headers, labels, help and toasts: user text there must be
# escaped (ui.text.literal), and control/bidi characters neutralised everywhere (ui.text.plain). AppTest gives
# each element's Markdown source; markdown-it (CommonMark, what Streamlit's renderer builds on) turns it into
# the HTML a browser would get.

OVERRIDE = "\u202e"
MARKDOWN_BAIT = "**bold** [link](https://evil.example) _it_ `code` :red[red]"
HOSTILE = f"{MARKDOWN_BAIT} {OVERRIDE}gnp.exe"
# Element types whose value Streamlit renders as Markdown (labels and help render it everywhere).
MARKDOWN_TYPES = {"markdown", "caption", "success", "info", "warning", "error", "toast", "title", "header",
                  "subheader"}

EDITABLE_TYPES = {"text_input", "text_area"}


def _render_markdown(source: str) -> str:
    from markdown_it import MarkdownIt  # comes with rich, which Streamlit requires

    return MarkdownIt("commonmark").enable("strikethrough").render(source)


def _strings(node) -> Iterator[tuple[str, bool]]:
    """Every string an element shows, with whether Streamlit renders it as Markdown."""
    value = getattr(node, "value", None)
    if getattr(node, "type", "") in EDITABLE_TYPES:
        value = None  # the text being edited: the user must see and change what is really stored
    if isinstance(value, str):
        yield value, getattr(node, "type", "") in MARKDOWN_TYPES
    elif hasattr(value, "to_csv"):  # a dataframe's cells
        yield value.to_csv(), False
    for attribute in ("label", "help", "placeholder"):
        if isinstance(text := getattr(node, attribute, None), str):
            yield text, attribute != "placeholder"
    for option in getattr(node, "options", None) or []:
        yield str(option), False
    proto = getattr(node, "proto", None)
    if getattr(node, "type", "") == "unknown" and proto is not None:  # page links, badges…: their labels
        for field, text in proto.ListFields():
            if isinstance(text, str) and field.name in ("label", "body", "help"):
                yield text, True


def markdown_violations(at) -> list[str]:
    problems = []
    for node in _walk(at._tree):
        for text, markdown in _strings(node):
            where = f"{getattr(node, 'type', '?')}: {text[:90]!r}"
            if OVERRIDE in text:
                problems.append(f"raw right-to-left override in {where}")
            if not markdown:
                continue
            html = _render_markdown(text)
            if "<strong>bold</strong>" in html or "<em>it</em>" in html:
                problems.append(f"user text rendered as emphasis in {where}")
            if '<a href="https://evil.example' in html or "https://evil.example" in text:  # links, autolinks
                problems.append(f"user text rendered as a link in {where}")
            if ":red[" in text or "<code>code</code>" in html:
                problems.append(f"user text rendered as a directive or code in {where}")
    return problems


def test_the_markdown_check_catches_rendered_user_text():
    from ui.text import literal, plain

    assert _render_markdown(MARKDOWN_BAIT).count("<strong>bold</strong>") == 1
    escaped = literal(HOSTILE)
    assert OVERRIDE not in escaped and OVERRIDE not in plain(HOSTILE)
    html = _render_markdown(escaped)
    assert "<strong>" not in html and "<a " not in html and "<em>" not in html and "<code>" not in html
    assert "**bold** [link](https://evil.example) _it_ `code`" in html  # shown as typed


@pytest.fixture
def markdown_bait(studio):
    """Every kind of user text the pages show, holding Markdown and a right-to-left override. Names are
    validated (no control characters) where they are typed, so the override is written to the rows directly,
    as data from an older version or another client would arrive."""
    from core.characters import characters
    from core.library import collections
    from core.library.assets import AssetSource, store_image
    from core.models import Character, Collection, Dataset, DatasetImage, LoraConfig, Post
    from core.training.configs import create_config
    from core.training.params import LoraParams

    dataset = datasets.create_dataset(name="bait", trigger_word="ohwx")
    datasets.import_files(dataset.id, [("a.png", image_bytes(seed=3))])
    image = datasets.all_images(dataset.id)[0]
    captions.save_caption(image.id, "caption")
    collection = collections.create_collection(name="bait collection")
    config = create_config(name="bait config", params=LoraParams())
    character = characters.current_character()
    post = posts.create_post(platform="youtube", scheduled_at=datetime.now(UTC) + timedelta(days=2),
                             caption="caption", title="title")
    store_image("generated/bait.png", image_bytes(64, 64, seed=4), source=AssetSource.GENERATED, prompt=HOSTILE)
    job = jobs.create_job("sleep", {"seconds": 1})
    with session_scope() as session:
        session.get(Dataset, dataset.id).name = f"{MARKDOWN_BAIT} {OVERRIDE}dataset"
        session.get(Dataset, dataset.id).trigger_word = f"ohwx {OVERRIDE}`x`"
        stored = session.get(DatasetImage, image.id)
        stored.filename, stored.caption = f"{HOSTILE}.png", HOSTILE
        session.get(Collection, collection.id).name = f"{MARKDOWN_BAIT} {OVERRIDE}collection"
        session.get(LoraConfig, config.id).name = f"{MARKDOWN_BAIT} {OVERRIDE}config"
        session.get(Character, character.id).name = f"{MARKDOWN_BAIT} {OVERRIDE}character"
        row = session.get(Post, post.id)
        row.caption, row.title = HOSTILE, HOSTILE
        failed = session.get(Job, job.id)
        failed.status, failed.error, failed.error_stage = JobStatus.FAILED, HOSTILE, "render"
    return {"dataset": dataset, "post": post, "job": job, "collection": collection}


@pytest.mark.parametrize("page", ["pages/datasets.py", "pages/captions.py", "pages/calendar.py", "pages/jobs.py",
                                  "pages/home.py", "pages/training.py", "pages/assets.py", "pages/monitoring.py",
                                  "pages/generate.py", "pages/videos.py", "pages/automation.py"])
def test_user_text_is_never_rendered_as_markdown(markdown_bait, page):
    at = open_page(page)
    assert markdown_violations(at) == []


def test_user_text_in_the_open_views_is_never_rendered_as_markdown(markdown_bait):
    from tests.apptest import click

    at = click(open_page("pages/calendar.py"), f"calendar.open.{markdown_bait['post'].id}")  # the post editor
    assert markdown_violations(at) == []
    at = open_page("pages/jobs.py")
    at.selectbox(key="jobs.open").set_value(markdown_bait["job"].id).run()  # the failed job's detail
    assert markdown_violations(at) == []
    at = open_page("pages/assets.py", **{"assets.view": "collections"})
    assert markdown_violations(at) == []
    at = open_page("pages/training.py", **{"training.section": "configs"})
    assert markdown_violations(at) == []


def test_import_messages_show_file_names_as_text(markdown_bait):
    """Accepted, duplicate, rejected and zip-entry messages all quote the file name the user chose."""
    import io
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"{HOSTILE}.png", b"not an image")
        zipped.writestr(f"../{HOSTILE}.png", image_bytes(seed=9))
    report = datasets.import_files(markdown_bait["dataset"].id, [
        (f"{HOSTILE} copy.png", image_bytes(seed=3)),  # a duplicate of a.png
        (f"{HOSTILE}.txt.png", b"not an image"),
        (f"{HOSTILE}.zip", archive.getvalue()),
        (f"{HOSTILE} new.png", image_bytes(seed=5)),
    ])
    assert report.added and report.duplicates and len(report.errors) >= 2
    at = open_page("pages/datasets.py", **{"datasets.last_report": report})
    shown = [e.value for e in at.error] + [i.value for i in at.info]
    assert len(shown) >= len(report.errors) + len(report.duplicates)
    assert markdown_violations(at) == []
