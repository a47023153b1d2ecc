"""Widgets shared by the dataset and caption pages: the dataset list and picker, gallery, reports."""

from __future__ import annotations

import streamlit as st

from core.datasets import datasets
from core.datasets.datasets import DatasetStatus, ImportReport
from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import Dataset, DatasetKind
from ui.widgets import status_badge

SORTS = {"created": "Created", "updated": "Updated", "name": "Name", "images": "Image count"}


def dataset_picker(prefix: str) -> Dataset | None:
    """Filters, a paginated table of datasets and a picker; returns the chosen dataset."""
    # Once a dataset is open, the list folds away so the work on it gets the screen.
    with st.expander("Find a dataset", expanded="datasets.selected" not in st.session_state):
        columns = st.columns([3, 2, 2, 2, 1, 1])
        search = columns[0].text_input("Search", key=f"{prefix}.search", placeholder="name or trigger word")
        status = columns[1].selectbox("Status", ["any", *DatasetStatus.ALL], key=f"{prefix}.status")
        kind = columns[2].selectbox("Kind", ["any", *[k.value for k in DatasetKind]], key=f"{prefix}.kind")
        sort = columns[3].selectbox("Sort by", list(SORTS), format_func=SORTS.get, key=f"{prefix}.sort")
        descending = columns[4].toggle("Desc.", value=True, key=f"{prefix}.desc")
        page_size = columns[5].selectbox("Per page", [10, 25, 50, 100], index=1, key=f"{prefix}.page_size")
        page = datasets.list_datasets(
            status=None if status == "any" else status,
            kind=None if kind == "any" else kind, search=search or None, sort=sort, descending=descending,
            page=st.session_state.get(f"{prefix}.list_page", 1), page_size=page_size,
        )
        if not page.items:
            st.info("No datasets match. Create one above, or the demo dataset to try the studio offline.")
        st.dataframe(
            [{"name": d.name, "status": d.status, "kind": d.kind, "trigger word": d.trigger_word,
              "images": d.image_count, "updated": jobs.aware(d.updated_at)} for d in page.items],
            hide_index=True,
            column_config={"updated": st.column_config.DatetimeColumn("updated (UTC)", format="YYYY-MM-DD HH:mm")},
        )
        st.number_input(f"Page (of {page.pages}) · {page.total} dataset(s)", 1, page.pages,
                        key=f"{prefix}.list_page")
    by_id = {d.id: d for d in page.items}
    wanted = st.session_state.get("datasets.selected") or st.session_state.get(f"{prefix}.dataset_id")
    if wanted not in by_id and wanted is not None:
        try:
            by_id = {wanted: datasets.get_dataset(wanted), **by_id}  # keep a dataset chosen on another page
        except StudioError:
            pass
    if not by_id:
        return None
    ids = list(by_id)
    chosen = st.selectbox("Open dataset", ids, index=ids.index(wanted) if wanted in ids else 0,
                          format_func=lambda i: by_id[i].name, key=f"{prefix}.open")
    st.session_state["datasets.selected"] = chosen
    return by_id[chosen]


def render_gallery(dataset: Dataset, *, per_page: int = 24) -> None:
    """Thumbnails with captions (as plain text) and per-image selection for deletion."""
    page_number = st.session_state.get("datasets.gallery_page", 1)
    page = datasets.list_images(dataset.id, page=page_number, page_size=per_page)
    if not page.items:
        st.info("No images yet: upload some in the Upload tab.")
        return
    selected: list[int] = []
    grid = st.columns(6)
    for index, image in enumerate(page.items):
        with grid[index % 6]:
            st.image(datasets.read_thumbnail(image), width="stretch")
            st.text(image.caption or "(no caption)")  # st.text: captions are never rendered as markup
            status_badge("reviewed" if image.reviewed else ("captioned" if image.caption else "uncaptioned"))
            if st.checkbox(f"Select {image.filename}", key=f"datasets.pick.{image.id}", label_visibility="collapsed"):
                selected.append(image.id)
    st.number_input(f"Page (of {page.pages}) · {page.total} image(s)", 1, page.pages, key="datasets.gallery_page")
    if st.button(f"Delete {len(selected)} selected image(s)", key="datasets.delete_images", disabled=not selected):
        datasets.delete_images(dataset.id, selected)
        st.rerun()


def render_import_report(report: ImportReport) -> None:
    if report.added:
        st.success(f"Imported {len(report.added)} image(s).")
    for message in report.duplicates:
        st.info(message)
    for message in report.errors:
        st.error(message)


@st.fragment(run_every=2)
def show_job_progress(job_id: str) -> None:
    job = jobs.get_job(job_id)
    left, right = st.columns([1, 5])
    with left:
        status_badge(job.status)
    right.progress(job.progress, text=job.progress_message or job.stage or job.status)
    if job.error:
        st.error(f"{job.error_stage}: {job.error}")
    st.page_link("pages/jobs.py", label=f"Job {job.id[:8]} on the Jobs page", icon=":material/work_history:")
