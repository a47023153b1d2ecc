"""Creating, handing over, editing and deleting a dataset: the "New dataset" expander, the buttons that
take the open dataset to Training or Captions, and the Settings tab."""

from __future__ import annotations

import streamlit as st

from core.datasets import datasets
from core.errors import StudioError
from core.models import Dataset, DatasetKind
from ui import page_paths
from ui.datasets.picker import SELECTED
from ui.text import literal

KINDS = [k.value for k in DatasetKind]


def new_dataset() -> None:
    with st.expander("New dataset", expanded=False):
        with st.form("datasets.new", clear_on_submit=True):
            name = st.text_input("Name", max_chars=120)
            kind = st.selectbox("Kind", KINDS)
            trigger = st.text_input("Trigger word", placeholder="ohwx woman", max_chars=120)
            description = st.text_area("Description", max_chars=2000)
            if st.form_submit_button("Create dataset"):
                _create(name=name, kind=kind, trigger=trigger, description=description)
        if st.button("Create the demo dataset (15 drawn images, no download)", key="datasets.demo"):
            _create_demo()


def _create(*, name: str, kind: str, trigger: str, description: str) -> None:
    try:
        created = datasets.create_dataset(name=name, kind=kind, trigger_word=trigger, description=description)
        st.session_state[SELECTED] = created.id
        st.toast(f"Dataset {literal(created.name)} created")
    except StudioError as error:
        st.error(literal(error))


def _create_demo() -> None:
    try:
        demo, report = datasets.create_demo_dataset(name=f"Demo character {datasets.list_datasets().total + 1}")
        st.session_state[SELECTED] = demo.id
        st.toast(f"{literal(demo.name)}: {report.summary}")
    except StudioError as error:
        st.error(literal(error))


def dataset_header(dataset: Dataset) -> None:
    """The open dataset's name, facts, and the hand-overs to Training and Captions."""
    st.subheader(literal(dataset.name))
    trigger = literal(dataset.trigger_word) or "—"
    st.caption(f"{dataset.kind} · trigger word: {trigger} · {dataset.image_count} image(s)")
    actions = st.columns(3)
    if actions[0].button("Train a LoRA on this dataset", key="datasets.train", icon=":material/model_training:"):
        st.session_state["training.dataset_id"] = dataset.id
        st.switch_page(page_paths.TRAINING)
    if actions[1].button("Review captions", key="datasets.review", icon=":material/edit_note:"):
        st.session_state["captions.dataset_id"] = dataset.id
        st.switch_page(page_paths.CAPTIONS)


def settings_tab(dataset: Dataset, dataset_id: int) -> None:
    with st.form("datasets.edit"):
        new_name = st.text_input("Name", value=dataset.name, max_chars=120)
        new_kind = st.selectbox("Kind", KINDS, index=KINDS.index(dataset.kind))
        new_trigger = st.text_input("Trigger word", value=dataset.trigger_word, max_chars=120)
        new_description = st.text_area("Description", value=dataset.description, max_chars=2000)
        if st.form_submit_button("Save"):
            try:
                datasets.update_dataset(dataset_id, name=new_name, kind=new_kind, trigger_word=new_trigger,
                                        description=new_description)
                st.rerun()
            except StudioError as error:
                st.error(literal(error))
    confirm = st.checkbox(f"Yes, delete {literal(dataset.name)} and its {dataset.image_count} image(s)",
                          key="datasets.confirm")
    if st.button("Delete dataset", key="datasets.delete", disabled=not confirm, type="primary"):
        datasets.delete_dataset(dataset_id)
        st.session_state.pop(SELECTED, None)
        st.rerun()
