"""A local HTTP server for the edge of the internet: social platforms, OAuth providers, LLM APIs.

Each fake is a Starlette app served by uvicorn on a free loopback port in a background
thread, so clients talk real HTTP to it. Every request is recorded, and faults can be queued
per route name:

- ``Fault.respond(status, body, headers)``: answer with an error *instead of* acting
  (429 with ``Retry-After``, 500, an expired-token error…);
- ``Fault.lose_response(delay_s)``: act (the post is published), then hold the answer
  longer than the client waits, so the client sees a timeout although the action happened;
- ``Fault.stall(delay_s)``: wait before acting (a slow server; the client times out first,
  and the action still happens afterwards unless the fake checks ``request.is_disconnected``).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]
_BYTE_RANGE = re.compile(r"bytes (\d+)-(\d+)/")


@dataclass
class Fault:
    kind: str  # respond | lose_response | stall
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def respond(cls, status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
        return cls("respond", status=status, body=body, headers=headers or {})

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1, body: Any = None) -> Fault:
        return cls.respond(429, body or {"error": "rate limited"}, {"Retry-After": str(retry_after_s)})

    @classmethod
    def server_error(cls, status: int = 500, body: Any = None) -> Fault:
        return cls.respond(status, body or {"error": "internal error"})

    @classmethod
    def lose_response(cls, delay_s: float = 3.0) -> Fault:
        return cls("lose_response", delay_s=delay_s)

    @classmethod
    def stall(cls, delay_s: float = 3.0) -> Fault:
        return cls("stall", delay_s=delay_s)


@dataclass
class RecordedCall:
    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    fault: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeServer:
    """Subclasses list their routes as ``(name, method, path, handler)`` in :meth:`routes`."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- to override -----------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        raise NotImplementedError

    # --- faults and records ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, route: str, *faults: Fault) -> None:
        """Queue faults for the next calls of a route (one fault per call, in order)."""
        with self._lock:
            self._faults[route].extend(faults)

    def calls_to(self, route: str) -> list[RecordedCall]:
        with self._lock:
            return [call for call in self.calls if call.route == route]

    def content_ranges(self, route: str) -> list[tuple[int, int]]:
        """(first byte, last byte) of every chunk a route received, in order (``bytes */N`` status queries left out)."""
        ranges = []
        for call in self.calls_to(route):
            match = _BYTE_RANGE.match(call.headers.get("content-range", ""))
            if match:
                ranges.append((int(match.group(1)), int(match.group(2))))
        return ranges

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.popleft() if queue else None

    def _wrap(self, name: str, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            call = RecordedCall(
                route=name, method=request.method, path=request.url.path, query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()}, body=body,
            )
            with self._lock:
                self.calls.append(call)
            fault = self._next_fault(name)
            call.fault = fault.kind if fault else None
            if fault is not None and fault.kind == "respond":
                response: Response = (
                    JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
                    if not isinstance(fault.body, str | bytes)
                    else Response(fault.body, status_code=fault.status, headers=fault.headers)
                )
                call.status = response.status_code
                return response
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.delay_s)
            response = await handler(request)
            call.status = response.status_code
            if fault is not None and fault.kind == "lose_response":
                await asyncio.sleep(fault.delay_s)
            return response

        return endpoint

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(path, self._wrap(name, handler), methods=[method], name=name)
            for name, method, path, handler in self.routes()
        ])

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> FakeServer:
        self.port = _free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=type(self).__name__, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @contextmanager
    def running(self) -> Iterator[FakeServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
