"""The studio's single server: the Streamlit UI (app.py) plus the embedded HTTP API for n8n.

Run with ``streamlit run server.py`` (Streamlit finds the module-level ``app``).
"""

import streamlit as st

from core.db import upgrade_schema
from core.webhook import api_routes

upgrade_schema()
app = st.App("app.py", routes=api_routes())
