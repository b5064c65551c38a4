"""A webhook receiver for notification tests: a real HTTP endpoint on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """A real HTTP endpoint on loopback that keeps every JSON body and Authorization header."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"body": json.loads(body), "raw": body.decode(), **dict(self.headers)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, pipeline: str) -> list[str]:
        return [r["body"]["event"] for r in self.received if r["body"]["pipeline"] == pipeline]
