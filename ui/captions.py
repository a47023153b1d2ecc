"""The Captions page's parts: per-image editing with drafts that survive paging, token counts, marking
reviewed, bulk edits, and the training folder's export and import. Keys start with "captions." (and
"bulk." for the bulk edit)."""

from __future__ import annotations

import streamlit as st

from core.datasets import captions, datasets
from core.datasets.captions import BULK_OPERATIONS
from core.datasets.datasets import ImageFilter
from core.datasets.tokens import TOKEN_LIMIT, count_tokens
from core.errors import StudioError
from core.models import Dataset, DatasetImage
from core.pagination import Page
from ui.auth import guard
from ui.datasets.gallery import render_import_report
from ui.text import literal, plain
from ui.widgets import stored_id

_DRAFTS = "captions.drafts"  # image id -> edited caption not saved yet


def drafts() -> dict[int, str]:
    return st.session_state.setdefault(_DRAFTS, {})


def save_drafts() -> None:
    for image_id, text in list(drafts().items()):
        captions.save_caption(image_id, text)
        drafts().pop(image_id, None)


def _remember(image_id: int, saved: str) -> None:
    # Widgets forget their state when their page is not shown, so edits live in our own dict.
    text = st.session_state[f"captions.text.{image_id}"]
    if text == saved:
        drafts().pop(image_id, None)
    else:
        drafts()[image_id] = text


def _save(image_id: int, reviewed: bool) -> None:
    text = drafts().pop(image_id, None)
    captions.save_caption(image_id, text if text is not None else st.session_state[f"captions.text.{image_id}"],
                          reviewed=reviewed)


def caption_editor(image: DatasetImage, trigger_word: str) -> bool:
    """One image with its editable caption; returns whether it is selected."""
    picture, editor = st.columns([1, 3])
    picture.image(datasets.read_thumbnail(image), width="stretch")
    with editor:
        text = drafts().get(stored_id(image), image.caption)
        key = f"captions.text.{image.id}"
        st.session_state[key] = text
        st.text_area(literal(image.filename), key=key, height=80, on_change=guard(_remember),
                     args=(image.id, image.caption))
        tokens = count_tokens(text)
        info = f"{tokens} CLIP tokens"
        if trigger_word and trigger_word.lower() not in text.lower():
            info += " · trigger word missing"
        (st.warning if tokens > TOKEN_LIMIT else st.caption)(
            info + (f" · over {TOKEN_LIMIT}: the rest is cut off in training" if tokens > TOKEN_LIMIT else "")
        )
        buttons = st.columns(3)
        selected = buttons[0].checkbox("Select", key=f"captions.pick.{image.id}")
        buttons[1].button("Save", key=f"captions.save.{image.id}", on_click=guard(_save),
                          args=(image.id, image.reviewed))
        buttons[2].button("Save as reviewed" if not image.reviewed else "Reviewed ✓", key=f"captions.review.{image.id}",
                          on_click=guard(_save), args=(image.id, True),
                          disabled=image.reviewed and image.id not in drafts())
    return selected


def render_bulk_edit(dataset: Dataset, selected: list[int]) -> None:
    operation = st.selectbox("Operation", list(BULK_OPERATIONS), format_func=BULK_OPERATIONS.__getitem__, key="bulk.op")
    find = replace = text = ""
    case_sensitive = True
    if operation in ("replace", "regex"):
        find = st.text_input("Find", key="bulk.find")
        replace = st.text_input("Replace with", key="bulk.replace")
        case_sensitive = st.toggle("Case sensitive", value=True, key="bulk.case")
    elif operation in ("prefix", "suffix", "trigger"):
        text = st.text_input("Text", value=dataset.trigger_word if operation == "trigger" else "", key="bulk.text")
    scope = st.radio("Apply to", ["whole dataset", f"{len(selected)} selected image(s)"], key="bulk.scope",
                     horizontal=True)
    image_ids = None if scope == "whole dataset" else selected
    try:
        edit = captions.make_bulk_edit(operation=operation, find=find, replace=replace, text=text,
                                       case_sensitive=case_sensitive)
    except StudioError as error:
        st.info(literal(error))
        return
    try:
        preview = captions.preview_bulk_edit(stored_id(dataset), edit, image_ids)
    except StudioError as error:  # a regular expression too slow to run, or a bad replacement
        st.error(literal(error))
        return
    st.write(f"This changes **{preview.changed}** of {preview.total} caption(s).")
    if preview.examples:
        st.dataframe([{"before": plain(b), "after": plain(a)} for b, a in preview.examples], hide_index=True)
    if st.button(f"Apply to {preview.changed} caption(s)", key="bulk.apply", disabled=not preview.changed):
        try:
            changed = captions.apply_bulk_edit(stored_id(dataset), edit, image_ids)
        except StudioError as error:
            st.error(literal(error))
            return
        for image_id in list(drafts()):
            if image_ids is None or image_id in image_ids:
                drafts().pop(image_id, None)  # the bulk result replaces unsaved edits of those images
        st.toast(f"{changed} caption(s) changed")
        st.rerun()


# --- the page's sections ---------------------------------------------------------------------------------

FILTERS: dict[ImageFilter, str] = {"all": "All", "unreviewed": "Unreviewed", "missing": "Missing caption",
                                   "long": "Long"}


def image_page(dataset_id: int) -> Page[DatasetImage]:
    """The filter and page size, and the page of images they select."""
    filters = st.columns([3, 1])
    which = filters[0].segmented_control("Show", list(FILTERS), default="all", key="captions.filter",
                                         format_func=FILTERS.__getitem__)
    per_page = filters[1].selectbox("Per page", [12, 24, 48], key="captions.per_page")
    return datasets.list_images(dataset_id, which=which or "all", page=st.session_state.get("captions.page", 1),
                                page_size=per_page)


def unsaved_edits() -> None:
    pending = drafts()
    if pending:
        st.warning(f"{len(pending)} unsaved edit(s) — they are kept while you move between pages.")
        if st.button("Save all edits", key="captions.save_all", type="primary"):
            save_drafts()
            st.rerun()


def caption_editors(page: Page[DatasetImage], trigger_word: str) -> list[int]:
    """An editor per image of the page, then the pager; returns the ids of the selected images."""
    selected = [image.id for image in page.items if caption_editor(image, trigger_word) and image.id is not None]
    st.number_input(f"Page (of {page.pages}) · {page.total} image(s)", 1, page.pages, key="captions.page")
    return selected


def mark_reviewed(dataset_id: int, selected: list[int]) -> None:
    if selected and st.button(f"Mark {len(selected)} selected as reviewed", key="captions.mark_reviewed"):
        captions.set_reviewed(dataset_id, selected)
        st.rerun()


def training_folder(dataset: Dataset, dataset_id: int) -> None:
    """Export the dataset as a kohya-style training folder (a zip), or import one."""
    st.write("A zip of `image.png` + `image.txt` pairs: the layout kohya and the diffusers scripts read.")
    if st.button("Prepare export", key="captions.export"):
        try:
            st.session_state["captions.export_zip"] = (dataset_id, datasets.export_training_zip(dataset_id))
        except StudioError as error:
            st.error(literal(error))
    exported = st.session_state.get("captions.export_zip")
    if exported and exported[0] == dataset_id:
        st.download_button("Download zip", exported[1], file_name=f"{dataset.name}.zip", mime="application/zip",
                           key="captions.download")
    archive = st.file_uploader("Import a training-folder zip (captions come along)", type=["zip"],
                               key="captions.import_zip")
    if archive is not None and st.button("Import zip", key="captions.import"):
        render_import_report(datasets.import_files(dataset_id, [(archive.name, archive.getvalue())]))
