"""Home: what the studio is doing right now."""

import streamlit as st

from core.jobs import count_by_status, list_jobs
from ui.widgets import status_badge

st.title("InfluencerAI Studio")
st.caption("Dataset → captions → LoRA → images → videos → calendar → posts, each step a tracked job.")

counts = count_by_status()
columns = st.columns(5)
for column, status in zip(columns, ("queued", "running", "succeeded", "failed", "cancelled"), strict=True):
    column.metric(status.capitalize(), counts.get(status, 0))

st.subheader("Latest jobs")
latest = list_jobs(page_size=5).items
if not latest:
    st.info("No jobs yet. Start one from the Jobs page or with `python -m workers enqueue noop`.")
for job in latest:
    left, middle, right = st.columns([2, 1, 3])
    left.write(f"`{job.id[:8]}` {job.kind}")
    with middle:
        status_badge(job.status)
    right.progress(job.progress, text=job.progress_message or job.stage or "")
st.page_link("pages/jobs.py", label="All jobs", icon=":material/work_history:")
