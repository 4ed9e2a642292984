"""A webhook receiver on loopback that answers from a script and records what it got."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """`script[path]` lists the statuses to answer in turn; the last one repeats.

    Each answer waits `delay_s` first (a slow receiver).
    """

    def __init__(self, script: dict[str, list[int]], delay_s: float = 0.0) -> None:
        self.script = {path: list(codes) for path, codes in script.items()}
        self.received: dict[str, list[Received]] = defaultdict(list)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received[self.path].append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    codes = receiver.script.get(self.path, [404])
                    code = codes.pop(0) if len(codes) > 1 else codes[0]
                time.sleep(delay_s)
                self.send_response(code)
                if code in (429, 503):
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, received: Received) -> bool:
    """Check a Standard Webhooks signature independently of the service's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}.".encode()
    expected = base64.b64encode(
        hmac.new(key, signed + received.body, hashlib.sha256).digest()
    ).decode()
    offered = [
        s.split(",", 1)[1]
        for s in received.headers["webhook-signature"].split()
        if s.startswith("v1,")
    ]
    return any(hmac.compare_digest(expected, sig) for sig in offered)
