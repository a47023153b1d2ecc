"""Datasets: create, upload (images or a zip), browse, check and auto-caption a character's images."""

import streamlit as st

from ui.datasets.gallery import render_gallery
from ui.datasets.manage import dataset_header, new_dataset, settings_tab
from ui.datasets.picker import dataset_picker
from ui.datasets.tabs import caption_tab, check_tab, upload_tab

st.title("Datasets")
new_dataset()

dataset = dataset_picker("datasets")
if dataset is None or dataset.id is None:
    st.stop()
dataset_id = dataset.id

dataset_header(dataset)
images_tab, upload, caption, check, settings = st.tabs(["Images", "Upload", "Auto-caption", "Check", "Settings"])
with images_tab:
    render_gallery(dataset_id)
with upload:
    upload_tab(dataset, dataset_id)
with caption:
    caption_tab(dataset, dataset_id)
with check:
    check_tab(dataset_id)
with settings:
    settings_tab(dataset, dataset_id)
