"""Monitoring: queues, workers, job statistics, service health and hardware.

The live sections refresh every few seconds in fragments; the job statistics follow the chosen window.
"""

import streamlit as st

from ui import monitoring as parts

st.title("Monitoring")
parts.live_queues_and_workers()
parts.jobs_section()
parts.live_health_and_hardware()
