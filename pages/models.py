"""Models: installed base models and LoRAs, disk use, installs (hub with progress, single file, folder)."""

import streamlit as st

from ui import models as parts

st.title("Models")
parts.disk_use()
st.subheader("Install a base model")
parts.install_section()
parts.installing()
st.subheader("Base models")
parts.models_table(st.session_state.get("models.page", 1))
st.subheader("LoRAs")
parts.loras_table(st.session_state.get("models.lora_page", 1))
st.subheader("Import a LoRA from a URL")
parts.lora_url_section()
