"""The client's HTTP API as the command line calls it: JSON in and out, the bearer token on
every request, and a refusal's reason (the client's `error`) raised as ApiError."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

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
        return json.loads(self._call("GET", path, query))

    def post(self, path: str, body: dict | None = None, timeout_s: float = TIMEOUT_S) -> tuple[int, dict]:
        status, text = self._exchange("POST", path, {}, body, timeout_s)
        return status, json.loads(text)

    def text(self, path: str, **query: str) -> str:
        return self._call("GET", path, query).decode(errors="replace")

    def events(self, path: str, **query: str) -> Iterator[tuple[str, str]]:
        """The server-sent events of `path`: (event, data) pairs, as the client re-frames a node's."""
        request = self._request("GET", path, {**query, "follow": "1"}, None)
        try:
            with urllib.request.urlopen(request, timeout=FOLLOW_TIMEOUT_S) as response:
                event, data = "message", []
                for raw in response:
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    if not line:
                        if data:
                            yield event, "\n".join(data)
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, _reason(error.read(), error.reason)) from None
        except (urllib.error.URLError, OSError) as error:
            raise ApiError(0, f"no answer from {self.url}: {getattr(error, 'reason', error)}") from None

    def _call(self, method: str, path: str, query: dict) -> bytes:
        return self._exchange(method, path, query, None)[1]

    def _exchange(self, method: str, path: str, query: dict, body: dict | None,
                  timeout_s: float = TIMEOUT_S) -> tuple[int, bytes]:
        request = self._request(method, path, query, body)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, response.read()
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
