"""The Training page's "Import LoRA" section: a community LoRA file (kohya/A1111, LoCon, LoKr/LoHa, ComfyUI,
diffusers, PEFT; for the DiT families also ai-toolkit, musubi-tuner and OneTrainer) uploaded, checked like any upload
and queued for conversion against its base model."""

from __future__ import annotations

import streamlit as st

from core.errors import StudioError
from core.loras.imports import MAX_IMPORT_BYTES, submit_import
from core.training.configs import get_default_config, params_of
from core.training.families import FAMILY_LABELS
from ui.feedback import flash, show_flash
from ui.text import literal

FLASH = "training.import.flash"


def import_section() -> None:
    show_flash(FLASH)
    st.caption("A LoRA (also LoCon, LoKr, LoHa) from Civitai, ComfyUI, kohya sd-scripts, A1111/Forge, ai-toolkit, "
               "OneTrainer or diffusers becomes a LoRA version "
               "generation can use. Only .safetensors files are read (never pickles), up to "
               f"{MAX_IMPORT_BYTES // 2**20:,} MiB; a file whose keys do not fit the base model is refused with "
               "the keys named.")
    default = params_of(get_default_config())
    with st.form("training.import.form", clear_on_submit=True):
        upload = st.file_uploader("LoRA file", type=["safetensors"], key="training.import.file")
        name = st.text_input("Name", max_chars=200, key="training.import.name", placeholder="the file's name")
        family = st.selectbox("Model family", list(FAMILY_LABELS), format_func=FAMILY_LABELS.__getitem__,
                              index=list(FAMILY_LABELS).index(default.family), key="training.import.family")
        base_model = st.text_input("Base model it is for", value=default.base_model, max_chars=500,
                                   key="training.import.base_model")
        trigger = st.text_input("Trigger word", max_chars=120, key="training.import.trigger")
        submitted = st.form_submit_button("Import", icon=":material/upload:")
    if submitted:
        _submit(upload, name=name, family=family, base_model=base_model, trigger=trigger)


def _submit(upload: object, *, name: str, family: str, base_model: str, trigger: str) -> None:
    if upload is None:
        st.error("Choose a .safetensors file first.")
        return
    try:
        job = submit_import(upload.getvalue(), file_name=upload.name, name=name.strip(),  # type: ignore[attr-defined]
                            family=family, base_model=base_model.strip(), trigger_word=trigger.strip())
    except StudioError as error:
        st.error(literal(str(error)))
        return
    flash(FLASH, "success", f"Import queued as job {job.id[:8]}; the LoRA is listed for generation once it "
                            "finishes (its log names what was loaded).")
    st.rerun()
