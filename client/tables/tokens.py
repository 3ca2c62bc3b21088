"""Personal API tokens: a person's bearer token for scripts, with a role, an expiry, revocable.

Only each token's sha256 is kept: a token is 32 random bytes, so its hash cannot be
searched backwards, and the records hold no token a reader of them could use. A token
is shown once, when it is made (`client/index.py token create`); a lost one is revoked
and another made.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from client.tables.store import RecordStore

# Every token starts so: a caller's bearer token that does not is the machine token or nothing.
TOKEN_PREFIX = "pbft_"
MAX_TOKEN_DAYS = 366  # a token lives a year at most; scripts that run longer get a new one
# Tokens listed, at most; revoked and expired ones are kept for the audit of who held what.
MAX_LISTED_TOKENS = 1000


@dataclass(frozen=True)
class Holder:
    """Who a valid token acts for, and with what role."""

    token_id: int
    owner: str
    role: str | None  # None: whatever its owner is granted (clients[].grants)
    repositories: frozenset[str] | None  # None: every repository


class TokenRefused(Exception):
    """A token the records know but that no longer acts for anyone: `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Tokens:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def create(self, owner: str, name: str, role: str | None, now: float, days: int,
               repositories: frozenset[str] | None = None) -> tuple[int, str]:
        """Make a token for `owner` with `role` on `repositories` (None: every one), or with no
        role of its own (its owner's grants), valid `days` from `now`; its id and the token,
        which nothing keeps. Committed at once."""
        assert 1 <= days <= MAX_TOKEN_DAYS and repositories != frozenset()
        assert role is not None or repositories is None, "a token with its owner's grants has their repositories"
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scope = None if repositories is None else json.dumps(sorted(repositories))
        cursor = self._store.write(
            "INSERT INTO tokens (owner, name, role, repositories, hash, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (owner, name, role, scope, _hash(token), now, now + days * 86400),
        )
        self._store.commit()
        return cursor.lastrowid, token

    def holder(self, token: str, now: float) -> Holder | None:
        """Who `token` acts for; None if it is no token the records know, TokenRefused if it
        expired or was revoked."""
        row = self._store.read("SELECT * FROM tokens WHERE hash = ?", (_hash(token),)).fetchone()
        if row is None:
            return None
        if row["revoked_at"] is not None:
            raise TokenRefused(f"token {row['token_id']} of {row['owner']} was revoked on {_day(row['revoked_at'])}")
        if now >= row["expires_at"]:
            raise TokenRefused(f"token {row['token_id']} of {row['owner']} expired on {_day(row['expires_at'])}")
        scope = None if row["repositories"] is None else frozenset(json.loads(row["repositories"]))
        return Holder(row["token_id"], row["owner"], row["role"], scope)

    def revoke(self, token_id: int, now: float) -> bool:
        """Revoke a token for good; False if there is no such token or it was revoked before."""
        cursor = self._store.write(
            "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (now, token_id))
        self._store.commit()
        return cursor.rowcount == 1

    def listed(self) -> list[dict[str, Any]]:
        """Every token, newest first: who holds it and until when, never the token itself."""
        rows = self._store.read(
            "SELECT token_id, owner, name, role, repositories, created_at, expires_at, revoked_at FROM tokens"
            " ORDER BY token_id DESC LIMIT ?", (MAX_LISTED_TOKENS,)).fetchall()
        dates = ("created_at", "expires_at", "revoked_at")
        return [{**dict(row), **{key: None if row[key] is None else _day(row[key]) for key in dates},
                 "repositories": None if row["repositories"] is None else json.loads(row["repositories"])}
                for row in rows]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
