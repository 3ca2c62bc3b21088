"""What a forge delivery says of the commit it asks to build: its message, its author, a link to it.

Shown on the dashboard next to a build, never built from: the nodes build the
agreed request alone, so none of this is signed or agreed, and all of it is
the payload's word. It is cleaned as untrusted text: control characters
(but newline and tab in a message), surrogates and the bidirectional
overrides that make text read other than it is are dropped, and the message
is cut at MAX_MESSAGE_BYTES, the author at MAX_AUTHOR_CHARS. A link is kept
only if it is an http(s) URL without credentials whose host is the
repository's own on the forge: the host of its configured `status_api` or
`url`, or, for a repository whose deliveries are signed, the host of the
`html_url` (GitLab: `web_url`) the payload gives it. Anything else (a
`javascript:` or `data:` URL, another site) is no link at all.
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterable

from pbft.build import COMMIT_SHA
from shared.config import RepositoryConfig

MAX_MESSAGE_BYTES = 4096
MAX_AUTHOR_CHARS = 200
MAX_URL_CHARS = 2048
# Embeddings, overrides and isolates (Unicode's bidirectional controls): "Trojan Source" text.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


@dataclass(frozen=True)
class CommitInfo:
    message: str | None
    author: str | None
    url: str | None


def push_commit_info(forge: str, payload: dict, repository: RepositoryConfig, commit: str) -> CommitInfo:
    """A push's head commit: GitHub's and Gitea's `head_commit`, GitLab's last of `commits`
    that is `commit` (its `checkout_sha`)."""
    if forge == "gitlab":
        listed = payload.get("commits")
        head = next((item for item in reversed(listed) if isinstance(item, dict) and item.get("id") == commit),
                    {}) if isinstance(listed, list) else {}
    else:
        head = payload_object(payload, "head_commit")
        # A tag push's `after` is the tag object; its head commit is what was tagged.
        if isinstance(head.get("id"), str) and COMMIT_SHA.fullmatch(head["id"]):
            commit = head["id"]
    hosts = _forge_hosts(forge, payload, repository)
    return CommitInfo(
        clean_message(head.get("message")),
        clean_author(payload_object(head, "author").get("name")),
        forge_link(head.get("url"), hosts) or _commit_page(forge, payload, hosts, commit),
    )


def pull_request_info(forge: str, payload: dict, repository: RepositoryConfig, commit: str) -> CommitInfo:
    """A pull (merge) request's title and author, and a link to its head commit."""
    hosts = _forge_hosts(forge, payload, repository)
    if forge == "gitlab":
        request = payload_object(payload, "object_attributes")
        title, author = request.get("title"), payload_object(payload, "user").get("username")
        url = forge_link(payload_object(request, "last_commit").get("url"), hosts)
    else:
        request = payload_object(payload, "pull_request")
        title, author, url = request.get("title"), payload_object(request, "user").get("login"), None
    return CommitInfo(clean_message(title), clean_author(author), url or _commit_page(forge, payload, hosts, commit))


def clean_message(value: Any) -> str | None:
    """`value` as text to show: printable, lines and tabs kept, at most MAX_MESSAGE_BYTES of UTF-8."""
    if not isinstance(value, str):
        return None
    # Cut before cleaning, so a megabyte of message costs no more than its first few kilobytes.
    text = _printable(value[:MAX_MESSAGE_BYTES], keep="\n\t").strip()
    return text.encode()[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore") or None


def clean_author(value: Any) -> str | None:
    """`value` as a name to show on one line, at most MAX_AUTHOR_CHARS characters."""
    if not isinstance(value, str):
        return None
    return _printable(value[:MAX_AUTHOR_CHARS], keep="").strip() or None


def _printable(text: str, keep: str) -> str:
    return "".join(
        ch for ch in text
        if ch in keep or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI_CONTROLS)
    )


def forge_link(value: Any, hosts: Iterable[str]) -> str | None:
    """`value` if it is an http(s) URL without credentials on one of `hosts`, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        return None
    if not value.isascii() or not value.isprintable() or " " in value:
        return None
    try:
        parts = urllib.parse.urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or hostname is None or "@" in parts.netloc:
        return None
    return value if hostname in set(hosts) else None


def _forge_hosts(forge: str, payload: dict, repository: RepositoryConfig) -> set[str]:
    """The hosts a link to this repository's commits may point to (see the module's doc)."""
    hosts = {_host(repository.status_api), _host(repository.url)}
    if repository.secret:
        # Signed by the forge: the repository's page it names is the forge's own.
        hosts.add(_host(_repository_page(forge, payload)))
    return {host for host in hosts if host}


def _repository_page(forge: str, payload: dict) -> Any:
    return payload_object(payload, "project").get("web_url") if forge == "gitlab" else \
        payload_object(payload, "repository").get("html_url")


def _commit_page(forge: str, payload: dict, hosts: set[str], commit: str) -> str | None:
    """The commit's page under the repository's page the payload names, if that page is on `hosts`."""
    page = forge_link(_repository_page(forge, payload), hosts)
    if page is None or not COMMIT_SHA.fullmatch(commit):
        return None
    separator = "/-/commit/" if forge == "gitlab" else "/commit/"
    return forge_link(page.rstrip("/") + separator + commit, hosts)


def _host(url: Any) -> str | None:
    """The lower-case host of an http(s) URL, else None (a path or an scp-style address has none)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.hostname if parts.scheme in ("http", "https") else None
    except ValueError:
        return None


def payload_object(payload: dict, key: str) -> dict:
    """The object under `key` in a payload, or an empty one: payloads are read, never trusted."""
    value = payload.get(key)
    return value if isinstance(value, dict) else {}
