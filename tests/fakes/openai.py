"""An OpenAI-compatible chat endpoint (``POST /v1/chat/completions``) whose answers tests script.

It checks requests the way real servers do (model, messages, ``response_format`` shape), answers
in the Chat Completions shape with ``usage`` counted in words, and can behave like the servers
the client must cope with: a local server that refuses ``json_schema`` (vLLM, llama.cpp) or even
``json_object``, and a hosted one that wants an API key (401 in OpenAI's error shape).
Give the client ``server.url + "/v1"``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.server import FakeServer, Handler


@dataclass
class Reply:
    """A scripted answer: the assistant's content and how the completion ended."""

    content: str | None
    finish_reason: str = "stop"
    include_usage: bool = True  # some local servers send no usage
    model: str | None = None  # the model the server reports; default: the requested one


ScriptedReply = str | Reply | Callable[[dict[str, Any]], "str | Reply"]


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


def _words(text: Any) -> int:
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, list):  # content parts: [{"type": "text", "text": …}]
        return sum(_words(part.get("text")) for part in text if isinstance(part, dict))
    return 0


class FakeOpenAI(FakeServer):
    def __init__(self, *, api_key: str | None = None, reject_json_schema: bool = False,
                 reject_json_object: bool = False) -> None:
        super().__init__()
        self.api_key = api_key
        self.reject_json_schema = reject_json_schema
        self.reject_json_object = reject_json_object
        self._replies: deque[ScriptedReply] = deque()
        self._replies_lock = threading.Lock()
        self._ids = itertools.count(1)

    # --- scripting ----------------------------------------------------------------------------------------

    def reply(self, *replies: ScriptedReply) -> None:
        """Queue answers for the next successful completions, one each, in order."""
        with self._replies_lock:
            self._replies.extend(replies)

    @property
    def replies_left(self) -> int:
        with self._replies_lock:
            return len(self._replies)

    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of every chat-completion request, faulted or not."""
        return [call.json() for call in self.calls_to("chat")]

    def _next_reply(self, request: dict[str, Any]) -> Reply | None:
        with self._replies_lock:
            scripted = self._replies.popleft() if self._replies else None
        if callable(scripted):
            scripted = scripted(request)
        if isinstance(scripted, str):
            return Reply(scripted)
        return scripted

    # --- the API -----------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("chat", "POST", "/v1/chat/completions", self.chat_completions)]

    def _check_key(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if given == self.api_key:
            return None
        if not given:
            return openai_error(401, "You didn't provide an API key. You need to provide your API key in an "
                                     "Authorization header using Bearer auth.")
        masked = f"{given[:3]}{'*' * max(0, len(given) - 7)}{given[-4:]}" if len(given) > 8 else "***"
        return openai_error(401, f"Incorrect API key provided: {masked}.", code="invalid_api_key")

    def _check_body(self, body: Any) -> Response | None:
        if not isinstance(body, dict):
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            return openai_error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "'messages' must be a non-empty array", param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool",
                                                                             "developer"):
                return openai_error(400, f"Invalid value for 'messages[{index}].role'", param=f"messages[{index}]")
            if "content" not in message:
                return openai_error(400, f"Missing required parameter: 'messages[{index}].content'",
                                    param=f"messages[{index}].content")
        return self._check_response_format(body.get("response_format"))

    def _check_response_format(self, response_format: Any) -> Response | None:
        if response_format is None:
            return None
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            return openai_error(400, f"Invalid value for 'response_format.type': {kind!r}", param="response_format")
        if kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or not spec.get("name") or not isinstance(spec.get("schema"), dict):
                return openai_error(400, "'response_format.json_schema' needs a 'name' and a 'schema'",
                                    param="response_format")
            if self.reject_json_schema:  # what vLLM/llama.cpp builds without guided decoding say, roughly
                return openai_error(400, "response_format type 'json_schema' is not supported by this server",
                                    param="response_format")
        if kind == "json_object" and self.reject_json_object:
            return openai_error(400, "response_format type 'json_object' is not supported by this server",
                                param="response_format")
        return None

    async def chat_completions(self, request: Request) -> Response:
        refused = self._check_key(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            body = None
        invalid = self._check_body(body)
        if invalid is not None:
            return invalid
        if await request.is_disconnected():  # the client gave up during a stall: keep the reply for its retry
            return Response(status_code=499)
        reply = self._next_reply(body)
        if reply is None:
            return openai_error(500, "FakeOpenAI has no scripted reply left", type_="server_error")
        return JSONResponse(self._completion(body, reply))

    def _completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        prompt_tokens = sum(_words(message.get("content")) for message in request["messages"])
        completion_tokens = _words(reply.content)
        completion: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or request["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }],
        }
        if reply.include_usage:
            completion["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens}
        return completion
