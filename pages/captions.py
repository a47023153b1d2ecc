"""Caption review: edit, review and bulk-fix captions; export and import the training folder."""

import streamlit as st

from core.datasets.tokens import TOKEN_LIMIT
from ui.captions import (
    caption_editors,
    image_page,
    mark_reviewed,
    render_bulk_edit,
    training_folder,
    unsaved_edits,
)
from ui.datasets.picker import dataset_picker
from ui.text import literal

st.title("Captions")

dataset = dataset_picker("captions")
if dataset is None or dataset.id is None:
    st.stop()
dataset_id = dataset.id

st.caption(f"{literal(dataset.name)} · trigger word: {literal(dataset.trigger_word) or '—'} · "
           f"CLIP token limit {TOKEN_LIMIT}")
page = image_page(dataset_id)
unsaved_edits()
selected = caption_editors(page, dataset.trigger_word)
mark_reviewed(dataset_id, selected)

with st.expander("Bulk edit"):
    render_bulk_edit(dataset, selected)

with st.expander("Export and import the training folder"):
    training_folder(dataset, dataset_id)
