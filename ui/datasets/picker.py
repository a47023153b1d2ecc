"""The dataset picker the Datasets, Captions and Training pages share: filters, a paginated table of
datasets, and the dataset to open (kept across pages)."""

from __future__ import annotations

import streamlit as st

from core.datasets import datasets
from core.datasets.datasets import DatasetStatus, SortField
from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import Dataset, DatasetKind
from ui.text import plain
from ui.widgets import pick

SELECTED = "datasets.selected"  # the open dataset's id, shared by the pages that pick one

SORTS: dict[SortField, str] = {"created": "Created", "updated": "Updated", "name": "Name", "images": "Image count"}


def dataset_picker(prefix: str) -> Dataset | None:
    """Filters, a paginated table of datasets and a picker; returns the chosen dataset."""
    # Once a dataset is open, the list folds away so the work on it gets the screen.
    with st.expander("Find a dataset", expanded=SELECTED not in st.session_state):
        # One wrapping row of fixed-width filters: each keeps its label whole at any page width.
        with st.container(horizontal=True, vertical_alignment="bottom"):
            search = st.text_input("Search", key=f"{prefix}.search", placeholder="name or trigger word", width=240)
            status = st.selectbox("Status", ["any", *DatasetStatus.ALL], key=f"{prefix}.status", width=150)
            kind = st.selectbox("Kind", ["any", *[k.value for k in DatasetKind]], key=f"{prefix}.kind", width=150)
            sort = st.selectbox("Sort by", list(SORTS), format_func=SORTS.__getitem__, key=f"{prefix}.sort",
                                width=160)
            descending = st.toggle("Descending", value=True, key=f"{prefix}.desc")
            page_size = st.selectbox("Per page", [10, 25, 50, 100], index=1, key=f"{prefix}.page_size", width=110)
        page = datasets.list_datasets(
            status=None if status == "any" else status,
            kind=None if kind == "any" else kind, search=search or None, sort=sort, descending=descending,
            page=st.session_state.get(f"{prefix}.list_page", 1), page_size=page_size,
        )
        if not page.items:
            st.info("No datasets match. Create one above, or the demo dataset to try the studio offline.")
        st.dataframe(
            [{"name": plain(d.name), "status": d.status, "kind": d.kind, "trigger word": plain(d.trigger_word),
              "images": d.image_count, "updated": jobs.aware(d.updated_at)} for d in page.items],
            hide_index=True,
            column_config={"updated": st.column_config.DatetimeColumn("updated (UTC)", format="YYYY-MM-DD HH:mm")},
        )
        st.number_input(f"Page (of {page.pages}) · {page.total} dataset(s)", 1, page.pages,
                        key=f"{prefix}.list_page")
    by_id = {d.id: d for d in page.items}
    wanted = st.session_state.get(SELECTED) or st.session_state.get(f"{prefix}.dataset_id")
    if wanted not in by_id and wanted is not None:
        try:
            by_id = {wanted: datasets.get_dataset(wanted), **by_id}  # keep a dataset chosen on another page
        except StudioError:
            pass
    if not by_id:
        return None
    if wanted in by_id:
        st.session_state[SELECTED] = wanted
    chosen = pick("Open dataset", list(by_id), lambda i: plain(by_id[i].name), state=SELECTED, key=f"{prefix}.open")
    return by_id[chosen]
