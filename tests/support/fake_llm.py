"""A local server that speaks the OpenAI chat-completions protocol, for tests.

`FakeLlm` listens on a free loopback port in a thread, answers
`POST /v1/chat/completions` with a scripted sequence of behaviours (the last one
repeats once the script is used up) and records every request. A request without
`Authorization: Bearer <api_key>` gets 401 when the server has a key.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A 200 chat completion whose assistant message is `content` (valid JSON or not)."""

    content: str


@dataclass(frozen=True)
class Status:
    """An error status with a JSON error body (and Retry-After when given)."""

    code: int
    retry_after: int | None = None


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` before doing `then` (the client has usually given up by then)."""

    seconds: float
    then: Answer | Status


@dataclass(frozen=True)
class Raw:
    """A 200 response with this body as is."""

    body: bytes


Behaviour = Answer | Status | Slow | Raw


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None


def completion(content: str, model: str = "fake-model") -> dict[str, Any]:
    """A chat-completions response body with one assistant message."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass
class _State:
    api_key: str | None
    script: list[Behaviour]
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def next(self) -> Behaviour:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeLlm.requests` instead."""

    def do_POST(self) -> None:
        # The client may have given up already (a timeout under test).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            self._post()

    def _post(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with state.lock:
            state.requests.append(Recorded("POST", self.path, dict(self.headers.items()), body))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": "not found"}})
            return
        if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._send(401, {"error": {"message": "invalid api key"}})
            return
        behaviour = state.next()
        if isinstance(behaviour, Slow):
            if state.stopping.wait(behaviour.seconds):
                return
            behaviour = behaviour.then
        model = body.get("model", "") if isinstance(body, dict) else ""
        if isinstance(behaviour, Answer):
            self._send(200, completion(behaviour.content, model))
        elif isinstance(behaviour, Raw):
            self._send_bytes(200, behaviour.body, {})
        else:
            extra = {"Retry-After": str(behaviour.retry_after)} if behaviour.retry_after else {}
            self._send(behaviour.code, {"error": {"message": "scripted failure"}}, extra)

    def _send(self, code: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        self._send_bytes(code, json.dumps(payload).encode(), extra or {})

    def _send_bytes(self, code: int, data: bytes, extra: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeLlm:
    """The fake endpoint; use as a context manager. `base_url` ends in /v1."""

    def __init__(self, api_key: str | None = "test-key", script: Sequence[Behaviour] = ()) -> None:
        self._state = _State(api_key, list(script) or [Status(500)])
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    def script(self, *behaviours: Behaviour) -> None:
        """Replace what the next requests get."""
        if not behaviours:
            raise ValueError("a script needs at least one behaviour")
        with self._state.lock:
            self._state.script = list(behaviours)

    def __enter__(self) -> FakeLlm:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
