"""Who is signed in: a session per sign-in (client/signin.py), found by its cookie.

As for personal tokens, only each session cookie's sha256 is kept. A session
holds the person and their groups as the provider named them at sign-in, and
a CSRF token that every request changing something must carry beside the
cookie (client.access). It ends when it expires, or at sign-out.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from client.tables.store import RecordStore

SESSION_COOKIE = "pbft_session"
# Sessions kept at most; beyond, the oldest are forgotten (their people sign in again).
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    user: str
    groups: tuple[str, ...]
    csrf: str
    expires_at: float


class Sessions:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def begin(self, user: str, groups: tuple[str, ...], now: float, hours: float) -> tuple[str, Session]:
        """A new session: its cookie's value, which nothing keeps, and what it holds. Committed
        at once, with expired sessions and those beyond MAX_SESSIONS forgotten."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(user, groups, csrf, now + hours * 3600)
        self._store.write("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        self._store.write(
            "INSERT INTO sessions (hash, user, groups, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (_hash(cookie), user, json.dumps(list(groups)), csrf, now, session.expires_at),
        )
        self._store.write(
            "DELETE FROM sessions WHERE session_id NOT IN"
            " (SELECT session_id FROM sessions ORDER BY session_id DESC LIMIT ?)", (MAX_SESSIONS,))
        self._store.commit()
        return cookie, session

    def get(self, cookie: str, now: float) -> Session | None:
        """The live session of a cookie; None for one ended, expired or never begun."""
        row = self._store.read("SELECT * FROM sessions WHERE hash = ? AND expires_at > ?",
                               (_hash(cookie), now)).fetchone()
        if row is None:
            return None
        return Session(row["user"], tuple(json.loads(row["groups"])), row["csrf"], row["expires_at"])

    def end(self, cookie: str) -> bool:
        cursor = self._store.write("DELETE FROM sessions WHERE hash = ?", (_hash(cookie),))
        self._store.commit()
        return cursor.rowcount == 1


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "surrogatepass")).hexdigest()
