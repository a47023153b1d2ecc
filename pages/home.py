"""Home: the demo in one click, and the character at a glance (datasets, LoRA versions, recent images and
videos, next posts, what is running)."""

import streamlit as st

from core.reports.overview import character_overview
from ui.home import demo_section, glance

st.title("InfluencerAI Studio")
st.caption("Dataset → captions → LoRA → images → videos → calendar → posts, each step a tracked job.")

demo_section()
glance(character_overview())
