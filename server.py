"""The studio's single server: the Streamlit UI (app.py) plus the embedded HTTP API for n8n.

Run with ``streamlit run server.py`` (Streamlit finds the module-level ``app``).
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

import core.catalogue  # noqa: F401  (registers every job kind the API creates and lists)
from api.routes import api_routes
from core.db import upgrade_schema
from core.infra.logging_setup import configure_logging
from core.infra.storage import prepare_storage

# app.py declares every page with st.navigation, behind the login gate. Streamlit only learns
# that once app.py has run; until then, in a fresh process, it serves files in pages/ directly
# by URL (its older multipage mode), so the first visitor of /jobs would skip the gate.
# Still so in Streamlit 1.67: the first session's PagesManager turns that mode on when pages/ sits
# beside app.py, and only st.navigation turns it off (the ScriptRunner then runs pages/x.py directly).
PagesManager.uses_pages_directory = False

# Our loggers (studio.*, alembic, httpx) through the studio's handler: STUDIO_LOG_FORMAT, secrets masked.
# Streamlit's own loggers keep their handlers (they do not propagate to the root).
configure_logging()
upgrade_schema()
prepare_storage()
app = st.App("app.py", routes=api_routes())
