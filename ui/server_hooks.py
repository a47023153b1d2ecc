"""What the server's HTTP middleware (api/middleware.py, wired in server.py) asks Streamlit's runtime about a
session, outside any script run: whether it is logged in, how many uploaded bytes it holds, and whether a
``/media`` file belongs to a logged-in session."""

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


def media_visible(file_id: str, client_host: str | None) -> bool:
    """Whether a ``/media`` file (an image, audio or download a page drew) belongs to a session logged in from this
    client: Streamlit serves any file whose id is known, for minutes after its page, session or login is gone."""
    if not get_settings().login_required:
        return True
    if not Runtime.exists():
        return False
    manager = Runtime.instance().media_file_mgr
    # MediaFileManager keeps which session drew which file in private maps (Streamlit 1.67); if they move, no
    # file is served and tests/security/test_probe.py fails, rather than every file being served to anyone.
    drawn: dict[str, dict[str, str]] = getattr(manager, "_files_by_session_and_coord", {})
    deferred: dict[str, set[str]] = getattr(manager, "_deferred_ids_by_session", {})
    owners = {session for session, files in list(drawn.items()) if file_id in list(files.values())}
    owners |= {session for session, ids in list(deferred.items()) if file_id in set(ids)}
    return any(session_logged_in(session, client_host) for session in owners)
