"""Datasets: create, upload (images or a zip), browse, check and auto-caption a character's images."""

import streamlit as st

from core.config import get_settings
from core.datasets import datasets
from core.datasets.check import check_dataset
from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import DatasetKind
from ui.datasets import dataset_picker, render_gallery, render_import_report, show_job_progress

st.title("Datasets")

with st.expander("New dataset", expanded=False):
    with st.form("datasets.new", clear_on_submit=True):
        name = st.text_input("Name", max_chars=120)
        kind = st.selectbox("Kind", [k.value for k in DatasetKind])
        trigger = st.text_input("Trigger word", placeholder="ohwx woman", max_chars=120)
        description = st.text_area("Description", max_chars=2000)
        if st.form_submit_button("Create dataset"):
            try:
                created = datasets.create_dataset(name=name, kind=kind, trigger_word=trigger, description=description)
                st.session_state["datasets.selected"] = created.id
                st.toast(f"Dataset {created.name} created")
            except StudioError as error:
                st.error(str(error))
    if st.button("Create the demo dataset (15 drawn images, no download)", key="datasets.demo"):
        try:
            demo, report = datasets.create_demo_dataset(name=f"Demo character {datasets.list_datasets().total + 1}")
            st.session_state["datasets.selected"] = demo.id
            st.toast(f"{demo.name}: {report.summary}")
        except StudioError as error:
            st.error(str(error))

dataset = dataset_picker("datasets")
if dataset is None:
    st.stop()

st.subheader(dataset.name)
st.caption(f"{dataset.kind} · trigger word: {dataset.trigger_word or '—'} · {dataset.image_count} image(s)")
actions = st.columns(3)
if actions[0].button("Train a LoRA on this dataset", key="datasets.train", icon=":material/model_training:"):
    st.session_state["training.dataset_id"] = dataset.id
    st.switch_page("pages/training.py")
if actions[1].button("Review captions", key="datasets.review", icon=":material/edit_note:"):
    st.session_state["captions.dataset_id"] = dataset.id
    st.switch_page("pages/captions.py")

images_tab, upload_tab, caption_tab, check_tab, settings_tab = st.tabs(
    ["Images", "Upload", "Auto-caption", "Check", "Settings"]
)

with images_tab:
    render_gallery(dataset)

with upload_tab:
    generation = st.session_state.setdefault("datasets.upload_generation", 0)
    files = st.file_uploader("Images (JPEG, PNG, WebP) or one zip", type=["jpg", "jpeg", "png", "webp", "zip"],
                             accept_multiple_files=True, key=f"datasets.upload.{generation}")
    if st.button("Import", key="datasets.import", disabled=not files):
        with st.spinner("Checking and storing images…"):
            report = datasets.import_files(dataset.id, [(f.name, f.getvalue()) for f in files or []])
        st.session_state["datasets.last_report"] = report
        st.session_state["datasets.upload_generation"] = generation + 1  # clears the uploader
        st.rerun()
    if report := st.session_state.get("datasets.last_report"):
        render_import_report(report)

with caption_tab:
    with st.form("datasets.caption"):
        only_new = st.toggle("Only images without a caption", value=True)
        prompt = st.text_input("Conditional prompt", placeholder="a photo of")
        prepend = st.toggle(f"Prepend the trigger word ({dataset.trigger_word or 'none set'})", value=True)
        prefix, suffix = st.columns(2)
        prefix_text = prefix.text_input("Prefix")
        suffix_text = suffix.text_input("Suffix")
        max_length = st.slider("Max caption length (tokens)", 5, 120, 40)
        batch_size = st.slider("Batch size", 1, 64, get_settings().caption_batch_size)
        if st.form_submit_button("Caption images"):
            try:
                job = jobs.create_job("caption", {
                    "dataset_id": dataset.id, "only_uncaptioned": only_new, "prompt": prompt,
                    "prepend_trigger": prepend, "prefix": prefix_text, "suffix": suffix_text,
                    "max_length": max_length, "batch_size": batch_size,
                })
                st.session_state[f"datasets.caption_job.{dataset.id}"] = job.id
            except StudioError as error:
                st.error(str(error))
    if job_id := st.session_state.get(f"datasets.caption_job.{dataset.id}"):
        show_job_progress(job_id)

with check_tab:
    resolution = st.number_input("Training resolution", min_value=128, max_value=2048, value=512, step=64)
    report = check_dataset(dataset.id, resolution=int(resolution))
    metrics = st.columns(len(report.summary))
    for column, (label, count) in zip(metrics, report.summary.items(), strict=True):
        column.metric(label.replace("_", " "), count)
    for note in report.notes:
        st.warning(note)
    flagged = [{"image": f.filename, "warnings": "; ".join(f.warnings)} for f in report.findings if f.warnings]
    if flagged:
        st.dataframe(flagged, hide_index=True)
    elif report.image_count:
        st.success("Every image passes the check.")

with settings_tab:
    with st.form("datasets.edit"):
        new_name = st.text_input("Name", value=dataset.name, max_chars=120)
        kinds = [k.value for k in DatasetKind]
        new_kind = st.selectbox("Kind", kinds, index=kinds.index(dataset.kind))
        new_trigger = st.text_input("Trigger word", value=dataset.trigger_word, max_chars=120)
        new_description = st.text_area("Description", value=dataset.description, max_chars=2000)
        if st.form_submit_button("Save"):
            try:
                datasets.update_dataset(dataset.id, name=new_name, kind=new_kind, trigger_word=new_trigger,
                                        description=new_description)
                st.rerun()
            except StudioError as error:
                st.error(str(error))
    confirm = st.checkbox(f"Yes, delete {dataset.name} and its {dataset.image_count} image(s)", key="datasets.confirm")
    if st.button("Delete dataset", key="datasets.delete", disabled=not confirm, type="primary"):
        datasets.delete_dataset(dataset.id)
        st.session_state.pop("datasets.selected", None)
        st.rerun()
