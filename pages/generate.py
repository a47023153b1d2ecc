"""Generate: images from a template with LoRAs; results fill in as each batch finishes."""

import streamlit as st

from ui.generate import request_form, results

st.title("Generate")
form, gallery = st.columns([2, 3], gap="large")
with form:
    request_form()
with gallery:
    results()
