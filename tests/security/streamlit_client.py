"""A raw Streamlit client, as an attacker (or a script) would write one: Streamlit's protobuf messages over
``/_stcore/stream`` with no browser, no JavaScript and any headers it likes.

It sends ``rerun_script`` messages with the widget values it chooses and reads back what the script drew:
each element with its widget id, the fragments the page runs on a timer, and the session id that Streamlit
uses in upload URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

_DONE = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
         ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}


@dataclass
class Drawn:
    """What one run drew: elements in order, with the fragment each belongs to."""

    elements: list[tuple[Element, str]] = field(default_factory=list)
    fragments: set[str] = field(default_factory=set)  # fragments the page reruns on a timer (auto_rerun)

    def texts(self) -> list[str]:
        """The text of every alert, markdown, caption and title (what a person reads)."""
        out = []
        for element, _ in self.elements:
            kind = element.WhichOneof("type")
            if kind in ("alert", "markdown", "heading"):
                out.append(getattr(element, kind).body)
        return out

    def widget(self, kind: str, *, key: str | None = None, label: str | None = None) -> tuple[str, str]:
        """(widget id, fragment id) of the one ``kind`` element with this user key or label."""
        found = [(getattr(e, kind).id, fragment) for e, fragment in self.elements
                 if e.WhichOneof("type") == kind and (key is None or getattr(e, kind).id.endswith(f"-{key}"))
                 and (label is None or getattr(e, kind).label == label)]
        assert len(found) == 1, f"{kind} key={key} label={label}: found {len(found)} in {self.kinds()}"
        return found[0]

    def has(self, kind: str, *, key: str | None = None, label: str | None = None) -> bool:
        return any(e.WhichOneof("type") == kind and (key is None or getattr(e, kind).id.endswith(f"-{key}"))
                   and (label is None or getattr(e, kind).label == label) for e, _ in self.elements)

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("type")) for e, _ in self.elements]

    def exceptions(self) -> list[str]:
        return [f"{e.exception.type}: {e.exception.message} {list(e.exception.stack_trace)}"
                for e, _ in self.elements if e.WhichOneof("type") == "exception"]


class StreamlitClient:
    def __init__(self, base: str, *, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.connection: ClientConnection = connect(
            base.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=[Subprotocol("streamlit")],
            additional_headers=headers or {}, max_size=None, open_timeout=30, legacy=True)
        self.session_id = ""
        self.page_script_hash = ""

    def __enter__(self) -> StreamlitClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def run(self, *, page: str = "", query: str = "", widgets: list[WidgetState] | None = None,
            fragment_id: str = "") -> Drawn:
        message = BackMsg()
        state = message.rerun_script
        state.query_string, state.page_name, state.fragment_id = query, page, fragment_id
        if fragment_id:
            state.page_script_hash = self.page_script_hash
        state.widget_states.widgets.extend(widgets or [])
        self.connection.send(message.SerializeToString())
        return self._read_run()

    def _read_run(self) -> Drawn:
        drawn = Drawn()
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self.connection.recv(timeout=60))
            kind = forward.WhichOneof("type")
            if kind == "new_session":
                self.session_id = forward.new_session.initialize.session_id or self.session_id
                self.page_script_hash = forward.new_session.page_script_hash
                drawn = Drawn()  # a rerun (st.rerun) starts over: keep only the last run's elements
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                drawn.elements.append((forward.delta.new_element, forward.delta.fragment_id))
            elif kind == "auto_rerun":
                drawn.fragments.add(forward.auto_rerun.fragment_id)
            elif kind == "script_finished" and forward.script_finished in _DONE:
                return drawn

    # --- what a person does --------------------------------------------------------------------------------

    def log_in(self, password: str, *, page: str = "") -> Drawn:
        form = self.run(page=page)
        field_id, _ = form.widget("text_input", label="Password")
        submit_id, _ = form.widget("button", label="Log in")
        return self.run(page=page, widgets=[text(field_id, password), click(submit_id)])


def text(widget_id: str, value: str) -> WidgetState:
    state = WidgetState(id=widget_id)
    state.string_value = value
    return state


def click(widget_id: str) -> WidgetState:
    state = WidgetState(id=widget_id)
    state.trigger_value = True
    return state


def upload(base: str, session_id: str, data: bytes, *, file_id: str = "f1") -> httpx.Response:
    """Streamlit's upload endpoint, with the XSRF cookie and header anyone can get from the server."""
    with httpx.Client(base_url=base, timeout=60) as http:
        token = http.get("/_stcore/health").cookies.get("_streamlit_xsrf") or ""
        return http.put(f"/_stcore/upload_file/{session_id}/{file_id}", files={"file": ("x.png", data, "image/png")},
                        headers={"X-Xsrftoken": token})
