"""Jobs: every background job, filterable and paginated, with live progress and logs."""

import streamlit as st

from ui.jobs import enqueue_form, job_detail, job_filters, job_picker, job_table

st.title("Jobs")
enqueue_form()

query = job_filters()
listed = query.read()
job_table(query, listed)

if not listed.items:
    st.info("No jobs match these filters.")
    st.stop()

job_detail(job_picker(listed))
