"""Videos: images + script → a short video with voice-over, subtitles, music and normalised loudness."""

import streamlit as st

from ui.videos import renders, request_form

st.title("Videos")
form, results = st.columns([3, 2], gap="large")
with form:
    request_form()
with results:
    renders()
