"""The studio's single server: the Streamlit UI (app.py) plus the embedded HTTP API for n8n.

Run with ``streamlit run server.py`` (Streamlit finds the module-level ``app``).
"""

import streamlit as st
import uvicorn.config
from starlette.middleware import Middleware
from streamlit import config as streamlit_config
from streamlit.runtime.pages_manager import PagesManager
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import core.catalogue  # noqa: F401  (registers every job kind the API creates and lists)
from api.middleware import SessionHooks, StudioGuard
from api.routes import api_routes
from core.config import get_settings
from core.db import upgrade_schema
from core.infra.logging_setup import configure_logging
from core.infra.storage import prepare_storage, protect_data_dir
from ui.server_hooks import held_upload_bytes, media_visible, session_logged_in

# app.py declares every page with st.navigation, behind the login gate. Streamlit only learns
# that once app.py has run; until then, in a fresh process, it serves files in pages/ directly
# by URL (its older multipage mode), so the first visitor of /jobs would skip the gate.
# Still so in Streamlit 1.67: the first session's PagesManager turns that mode on when pages/ sits
# beside app.py, and only st.navigation turns it off (the ScriptRunner then runs pages/x.py directly).
PagesManager.uses_pages_directory = False

# Our loggers (studio.*, alembic, httpx) through the studio's handler: STUDIO_LOG_FORMAT, secrets masked.
# Streamlit's own loggers keep their handlers (they do not propagate to the root).
configure_logging()
settings = get_settings()


class _TrustedProxyHeaders(ProxyHeadersMiddleware):
    """uvicorn believes X-Forwarded-For from FORWARDED_ALLOW_IPS, 127.0.0.1 by default, which it reads before it
    imports this module; every login and rate limit keys on the client address, so only the proxies in
    STUDIO_TRUSTED_PROXIES (none by default: the TCP peer is the client) may name it."""

    def __init__(self, app: object, trusted_hosts: object = None) -> None:
        super().__init__(app, trusted_hosts=settings.trusted_proxy_list)  # type: ignore[arg-type]


# uvicorn wraps the app it imported (this module's ``app``) in this class right after the import.
uvicorn.config.ProxyHeadersMiddleware = _TrustedProxyHeaders  # type: ignore[misc]
# Tracebacks name server paths: only a development machine shows them in the browser.
streamlit_config.set_option("client.showErrorDetails", "full" if settings.is_development else "none", "server.py")
# One upload request: the largest file a page accepts, not Streamlit's 200 MB default.
streamlit_config.set_option("server.maxUploadSize", settings.upload_max_request_mb, "server.py")

protect_data_dir()
upgrade_schema()
prepare_storage()
app = st.App("app.py", routes=api_routes(), middleware=[
    Middleware(StudioGuard, hooks=SessionHooks(logged_in=session_logged_in, held_bytes=held_upload_bytes,
                                               media_visible=media_visible)),
])
