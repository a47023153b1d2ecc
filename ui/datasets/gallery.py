"""A dataset's images: the thumbnail gallery with captions and deletion, and the report of an import."""

from __future__ import annotations

import streamlit as st

from core.datasets import datasets
from core.datasets.datasets import ImportReport
from ui.text import literal, plain
from ui.widgets import status_badge, stored_id


def render_gallery(dataset_id: int, *, per_page: int = 24) -> None:
    """Thumbnails with captions (as plain text) and per-image selection for deletion."""
    page_number = st.session_state.get("datasets.gallery_page", 1)
    page = datasets.list_images(dataset_id, page=page_number, page_size=per_page)
    if not page.items:
        st.info("No images yet: upload some in the Upload tab.")
        return
    selected: list[int] = []
    grid = st.columns(6)
    for index, image in enumerate(page.items):
        with grid[index % 6]:
            st.image(datasets.read_thumbnail(image), width="stretch")
            st.text(plain(image.caption) or "(no caption)")  # st.text: captions are never rendered as markup
            status_badge("reviewed" if image.reviewed else ("captioned" if image.caption else "uncaptioned"))
            if st.checkbox(f"Select {literal(image.filename)}", key=f"datasets.pick.{image.id}",
                           label_visibility="collapsed"):
                selected.append(stored_id(image))
    st.number_input(f"Page (of {page.pages}) · {page.total} image(s)", 1, page.pages, key="datasets.gallery_page")
    if st.button(f"Delete {len(selected)} selected image(s)", key="datasets.delete_images", disabled=not selected):
        datasets.delete_images(dataset_id, selected)
        st.rerun()


def render_import_report(report: ImportReport) -> None:
    if report.added:
        st.success(f"Imported {len(report.added)} image(s).")
    for message in report.duplicates:
        st.info(literal(message))
    for message in report.errors:
        st.error(literal(message))
