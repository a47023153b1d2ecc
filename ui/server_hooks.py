"""What the server's HTTP middleware (api/middleware.py, wired in server.py) asks Streamlit's runtime about a
session, outside any script run: whether it is logged in, and how many uploaded bytes it holds."""

from __future__ import annotations

from streamlit.runtime import Runtime
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

from core.config import get_settings
from core.infra.auth import session_expired
from ui.auth import session_keys

_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def client_address(host: str | None) -> str | None:
    """A request's client as the UI names it (``st.context.ip_address``): None for localhost."""
    return None if host is None or host in _LOOPBACK else host


def session_logged_in(session_id: str, client_host: str | None) -> bool:
    """Whether ``session_id`` is a live session logged in from this client and within its lifetimes."""
    if not get_settings().login_required:
        return True
    if not Runtime.exists():
        return False
    session = Runtime.instance().get_app_session(session_id)
    if session is None:
        return False
    state = session.session_state
    keys = session_keys()

    def read(key: str) -> object:
        try:
            return state[key]
        except KeyError:
            return None

    logged_in_at, last_seen_at = read(keys.logged_in_at), read(keys.last_seen_at)
    return (bool(read(keys.ok)) and read(keys.client) == client_address(client_host)
            and isinstance(logged_in_at, float) and isinstance(last_seen_at, float)
            and not session_expired(logged_in_at=logged_in_at, last_seen_at=last_seen_at))


def held_upload_bytes(session_id: str) -> tuple[int, int]:
    """Bytes of uploaded files Streamlit holds in memory: (this session's, every session's)."""
    if not Runtime.exists():
        return 0, 0
    manager = Runtime.instance().uploaded_file_mgr
    if not isinstance(manager, MemoryUploadedFileManager):
        return 0, 0
    # A copy of the dicts, so uploads landing meanwhile (on the thread pool) cannot break the iteration.
    sessions = {sid: list(files.values()) for sid, files in list(manager.file_storage.items())}
    own = sum(len(f.data) for f in sessions.get(session_id, []))
    return own, sum(len(f.data) for files in sessions.values() for f in files)
