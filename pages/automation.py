"""Automation: the pipelines n8n (or this page) started, live, with cancel and retry; how to connect n8n."""

import streamlit as st

from ui.automation import connection_help, pipeline_list, start_form

st.title("Automation")
st.caption("Pipelines chain training → images → video, or plan → media → schedule; n8n starts and polls them.")
connection_help()
start_form()
st.subheader("Pipelines")
pipeline_list()
