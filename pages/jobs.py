"""Jobs: every background job, filterable and paginated, with live progress and logs."""

import streamlit as st

from ui.jobs import apply_link, enqueue_form, job_detail, job_filters, job_picker, job_table

st.title("Jobs")
apply_link()  # a ?job= link (a pipeline stage's job) opens that job
enqueue_form()

query = job_filters()
listed = query.read()
job_table(query, listed)

if not listed.items:
    st.info("No jobs match these filters.")
    st.stop()

job_detail(job_picker(listed))
