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
DEFAULT_DAYS = 90
# Tokens listed, at most; revoked and expired ones are kept for the audit of who held what.
MAX_LISTED_TOKENS = 1000


@dataclass(frozen=True)
class Holder:
    """Who a valid token acts for, and with what role."""

    token_id: int
    owner: str
    role: str | None  # None: whatever its owner is granted (clients[].grants)
    repositories: frozenset[str] | None  # None: every repository
    groups: tuple[str, ...] = ()  # its owner's, as sign-in named them when they made it


@dataclass(frozen=True)
class TokenMade:
    """A token to make: for `owner`, with `role` on `repositories` (None: every one), or with
    no role of its own (its owner's grants, with `groups`), for `days`."""

    owner: str
    label: str
    role: str | None
    days: int = DEFAULT_DAYS
    repositories: frozenset[str] | None = None
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert 1 <= self.days <= MAX_TOKEN_DAYS and self.repositories != frozenset()
        # A token with its owner's grants acts where the grants say.
        assert self.role is not None or self.repositories is None


class TokenRefused(Exception):
    """A token the records know but that no longer acts for anyone: `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Tokens:
    def __init__(self, store: RecordStore) -> None:
        self._store = store

    def create(self, made: TokenMade, now: float) -> tuple[int, str]:
        """Make the token `made` describes, valid from `now`; its id and the token, which
        nothing keeps. Committed at once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scope = None if made.repositories is None else json.dumps(sorted(made.repositories))
        cursor = self._store.write(
            "INSERT INTO tokens (owner, name, role, repositories, groups, hash, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (made.owner, made.label, made.role, scope, json.dumps(list(made.groups)) if made.groups else None,
             _hash(token), now, now + made.days * 86400),
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
        groups = () if row["groups"] is None else tuple(json.loads(row["groups"]))
        return Holder(row["token_id"], row["owner"], row["role"], scope, groups)

    def revoke(self, token_id: int, now: float, owner: str | None = None) -> bool:
        """Revoke a token for good (only one of `owner`'s, if given); False if there is no such
        token or it was revoked before."""
        cursor = self._store.write(
            "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL"
            " AND (? IS NULL OR owner = ?)", (now, token_id, owner, owner))
        self._store.commit()
        return cursor.rowcount == 1

    def listed(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every token (or `owner`'s), newest first: who holds it, its label and until when, never
        the token."""
        rows = self._store.read(
            "SELECT token_id, owner, name AS label, role, repositories, created_at, expires_at, revoked_at FROM tokens"
            " WHERE ? IS NULL OR owner = ? ORDER BY token_id DESC LIMIT ?",
            (owner, owner, MAX_LISTED_TOKENS)).fetchall()
        dates = ("created_at", "expires_at", "revoked_at")
        return [{**dict(row), **{key: None if row[key] is None else _day(row[key]) for key in dates},
                 "repositories": None if row["repositories"] is None else json.loads(row["repositories"])}
                for row in rows]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
