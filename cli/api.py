"""The client's HTTP API as the command line calls it: JSON in and out, the bearer token on
every request, and a refusal's reason (the client's `error`) raised as ApiError."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.sse import SseEvent, SseParser

# How long one call may take; a log followed takes as long as its build.
TIMEOUT_S = 30.0
FOLLOW_TIMEOUT_S = 3600.0


class ApiError(Exception):
    """The client refused or could not be reached: `status` 0 when it never answered."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Api:
    url: str  # the client's, e.g. http://localhost:8080
    token: str | None = None

    def get(self, path: str, **query: str) -> dict:
        return json.loads(self._exchange("GET", path, query))

    def post(self, path: str, body: dict | None = None, timeout_s: float = TIMEOUT_S) -> dict:
        return json.loads(self._exchange("POST", path, {}, body, timeout_s))

    def text(self, path: str, **query: str) -> str:
        return self._exchange("GET", path, query).decode(errors="replace")

    def events(self, path: str, **query: str) -> Iterator[SseEvent]:
        """The server-sent events of `path`, as the client re-frames a node's (shared/sse.py)."""
        parser = SseParser()
        with self._opened(self._request("GET", path, {**query, "follow": "1"}, None), FOLLOW_TIMEOUT_S) as response:
            while chunk := response.read1():
                yield from (event for event in parser.feed(chunk) if event.name is not None)

    def _exchange(self, method: str, path: str, query: dict, body: dict | None = None,
                  timeout_s: float = TIMEOUT_S) -> bytes:
        with self._opened(self._request(method, path, query, body), timeout_s) as response:
            return response.read()

    @contextlib.contextmanager
    def _opened(self, request: urllib.request.Request, timeout_s: float) -> Iterator[Any]:
        """The answer to `request`; a refusal or no answer raised as ApiError."""
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                yield response
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, _reason(error.read(), error.reason)) from None
        except (urllib.error.URLError, OSError) as error:
            raise ApiError(0, f"no answer from {self.url}: {getattr(error, 'reason', error)}") from None

    def _request(self, method: str, path: str, query: dict, body: dict | None) -> urllib.request.Request:
        url = self.url.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = b"" if method == "POST" else None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        return urllib.request.Request(url, data=data, method=method, headers=headers)


def _reason(body: bytes, fallback: str) -> str:
    """The client's `error` from a refusal's body, else the HTTP reason."""
    try:
        said = json.loads(body)
    except ValueError:
        return fallback
    return said.get("error", fallback) if isinstance(said, dict) else fallback
