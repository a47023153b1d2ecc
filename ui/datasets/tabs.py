"""The Datasets page's work tabs on the open dataset: Upload (images or a zip), Auto-caption (a caption
job with its live progress) and Check (what would hurt training)."""

from __future__ import annotations

import streamlit as st

from core.characters import likeness
from core.characters.characters import current_character
from core.config import get_settings
from core.datasets import datasets
from core.datasets.check import check_dataset
from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import Dataset
from ui import page_paths
from ui.auth import fragment
from ui.datasets.gallery import render_import_report
from ui.text import literal, plain
from ui.widgets import status_badge


def upload_tab(dataset: Dataset, dataset_id: int) -> None:
    """The uploader names the dataset it fills, and is its own per dataset: files picked while another
    dataset was open are never imported into this one."""
    generation = st.session_state.setdefault("datasets.upload_generation", 0)
    st.caption(f"Uploads go into the dataset **{literal(dataset.name)}**.")
    files = st.file_uploader("Images (JPEG, PNG, WebP) or one zip", type=["jpg", "jpeg", "png", "webp", "zip"],
                             accept_multiple_files=True, key=f"datasets.upload.{dataset_id}.{generation}")
    if st.button(f"Import into {literal(dataset.name)}", key="datasets.import", disabled=not files):
        with st.spinner("Checking and storing images…"):
            report = datasets.import_files(dataset_id, [(f.name, f.getvalue()) for f in files or []])
        st.session_state["datasets.last_report"] = report
        st.session_state["datasets.upload_generation"] = generation + 1  # clears the uploader
        st.rerun()
    if last := st.session_state.get("datasets.last_report"):
        render_import_report(last)


def caption_tab(dataset: Dataset, dataset_id: int) -> None:
    with st.form("datasets.caption"):
        only_new = st.toggle("Only images without a caption", value=True)
        prompt = st.text_input("Conditional prompt", placeholder="a photo of")
        prepend = st.toggle(f"Prepend the trigger word ({literal(dataset.trigger_word) or 'none set'})", value=True)
        prefix, suffix = st.columns(2)
        prefix_text = prefix.text_input("Prefix")
        suffix_text = suffix.text_input("Suffix")
        max_length = st.slider("Max caption length (tokens)", 5, 120, 40)
        batch_size = st.slider("Batch size", 1, 64, get_settings().caption_batch_size)
        if st.form_submit_button("Caption images"):
            try:
                job = jobs.create_job("caption", {
                    "dataset_id": dataset_id, "only_uncaptioned": only_new, "prompt": prompt,
                    "prepend_trigger": prepend, "prefix": prefix_text, "suffix": suffix_text,
                    "max_length": max_length, "batch_size": batch_size,
                })
                st.session_state[f"datasets.caption_job.{dataset_id}"] = job.id
            except StudioError as error:
                st.error(literal(error))
    if job_id := st.session_state.get(f"datasets.caption_job.{dataset_id}"):
        show_job_progress(job_id)


@fragment(run_every=2)
def show_job_progress(job_id: str) -> None:
    job = jobs.get_job(job_id)
    left, right = st.columns([1, 5])
    with left:
        status_badge(job.status)
    right.progress(job.progress, text=literal(job.progress_message or job.stage or job.status))
    if job.error:
        st.error(f"{literal(job.error_stage)}: {literal(job.error)}")
    st.page_link(page_paths.JOBS, label=f"Job {job.id[:8]} on the Jobs page", icon=":material/work_history:")


def check_tab(dataset_id: int) -> None:
    resolution = st.number_input("Training resolution", min_value=128, max_value=2048, value=512, step=64)
    report = check_dataset(dataset_id, resolution=int(resolution))
    metrics = st.columns(len(report.summary))
    for column, (label, count) in zip(metrics, report.summary.items(), strict=True):
        column.metric(label.replace("_", " "), count)
    for note in report.notes:
        st.warning(literal(note))
    flagged = [{"image": plain(f.filename), "warnings": "; ".join(f.warnings)} for f in report.findings if f.warnings]
    if flagged:
        st.dataframe(flagged, hide_index=True)
    elif report.image_count:
        st.success("Every image passes the check.")
    fingerprint_section(dataset_id)


def fingerprint_section(dataset_id: int) -> None:
    """The character's face fingerprint: what it was made from, and a button to make it from this dataset."""
    st.markdown("#### Face fingerprint")
    character = current_character()
    fingerprint = likeness.Fingerprint.of(character)
    if fingerprint is None:
        st.caption(f"{literal(character.name)} has no face fingerprint yet: likeness is not scored.")
    else:
        stale = " It is out of date (the dataset changed); it is being recomputed." \
            if likeness.fingerprint_is_stale(character) else ""
        st.caption(f"{literal(character.name)}'s fingerprint: {fingerprint.images_used} face(s) of dataset "
                   f"#{fingerprint.dataset_id}, model {literal(fingerprint.model)}, made "
                   f"{literal(fingerprint.computed_at[:16])} UTC; same person at face distance ≤ "
                   f"{character.likeness_threshold:.2f}.{stale}")
    if st.button(f"Make {literal(character.name)}'s fingerprint from this dataset", key="datasets.fingerprint",
                 help="Finds the face in every image (flags no face, several faces, another person) and "
                      "averages the rest. Generated images and training samples are scored against it."):
        try:
            job = likeness.request_fingerprint(character.id or 0, dataset_id)
            st.session_state[f"datasets.fingerprint_job.{dataset_id}"] = job.id
        except StudioError as error:
            st.error(literal(error))
    if job_id := st.session_state.get(f"datasets.fingerprint_job.{dataset_id}"):
        show_job_progress(job_id)
