"""A forge's commit-status API on loopback that records every status posted to it, in GitHub's
shape (`context`) or GitLab's (`name`), with the token each call carried, for the end-to-end
tests of forges, matrices and each node's own statuses."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


class Posted(NamedTuple):
    path: str
    context: str
    state: str
    description: str
    authorized: bool  # the request carried one of the server's tokens
    token: str  # what it carried, as a bearer or as GitLab's PRIVATE-TOKEN ("" for none)
    target_url: str


class StatusServer(ThreadingHTTPServer):
    """Serves in a thread of its own from `start()` to `stop()`; `tokens` are the ones it knows
    (the client's, the nodes' own), as a forge knows its users' tokens."""

    def __init__(self, *tokens: str) -> None:
        self.calls: list[Posted] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                bearer = self.headers.get("Authorization", "")
                carried = self.headers.get("PRIVATE-TOKEN") or (bearer[7:] if bearer.startswith("Bearer ") else "")
                server.calls.append(Posted(
                    urllib.parse.unquote(self.path), body.get("context") or body.get("name") or "",
                    body.get("state", ""), body.get("description", ""), carried in tokens, carried,
                    body.get("target_url", ""),
                ))
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def start(self) -> StatusServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def final(self, path: str, context: str | None = None, timeout_s: float = 120) -> Posted:
        """The last status posted to `path` (for `context`, if given) that is not `pending`."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = [call for call in self.calls
                    if call.path == path and context in (None, call.context) and call.state != "pending"]
            if done:
                return done[-1]
            assert time.monotonic() < deadline, (path, context, self.calls)
            time.sleep(0.2)

    def said(self, path: str, description: str, timeout_s: float = 120) -> Posted:
        """The last status posted to `path` whose description starts with `description`: a
        skipped build's verdict, say, which on GitHub is `pending` like its submission's."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = [call for call in self.calls if call.path == path and call.description.startswith(description)]
            if done:
                return done[-1]
            assert time.monotonic() < deadline, (path, description, self.calls)
            time.sleep(0.2)
