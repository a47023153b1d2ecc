"""Home: what the studio is doing right now."""

from zoneinfo import ZoneInfo

import streamlit as st

from core.config import get_settings
from core.jobs import aware, count_by_status, list_jobs
from core.models import Platform
from core.pipelines import list_pipelines
from core.posts import upcoming_posts
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

left, right = st.columns(2)
with left:
    st.subheader("Next posts")
    upcoming = upcoming_posts(limit=5)
    if not upcoming:
        st.info("Nothing scheduled. Plan posts or produce content for a slot on the Calendar.")
    zone = get_settings().timezone
    for post in upcoming:
        when = aware(post.scheduled_at).astimezone(ZoneInfo(zone))
        st.write(f"{when:%a %d %b %H:%M} · {Platform(post.platform).label} · {post.caption[:60]}")
    st.page_link("pages/calendar.py", label="Calendar", icon=":material/calendar_month:")
with right:
    st.subheader("Pipelines")
    running = list_pipelines(statuses=["queued", "running"], page_size=5).items
    if not running:
        st.info("No pipeline running. n8n or the Automation page starts them.")
    for pipeline in running:
        label = f"{pipeline.kind} `{pipeline.id[:8]}` · {pipeline.stage or pipeline.status}"
        st.progress(pipeline.progress, text=label)
    st.page_link("pages/automation.py", label="Automation", icon=":material/account_tree:")
