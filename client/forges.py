"""Push and pull request webhooks from GitHub, GitLab and Gitea/Forgejo: recognise, authenticate, parse.

Everything here is a pure function of the raw body and the headers, so each
refusal is a WebhookError with a 4xx and a reason, and the property tests
can run the parser thousands of times without a server.

A delivery is checked in this order: the event (events other than push, pull
or merge request and ping are acknowledged unread, since nothing is done for
them), the content
type and JSON, the repository the payload names (it must be configured, by
`full_name` or `url`), the repository's secret, then the ref and commit.
The payload is parsed before it is authenticated because the secret to
check it with belongs to the repository it names; only configured names
ever leave this module, never a URL from the body.

A repository without a `secret` accepts unsigned deliveries: anyone who can
reach the client can then ask for builds of its branches, as with the plain
`{"branch": ...}` call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from multidict import CIMultiDict

from client.actors import forge_sender
from client.commitinfo import CommitInfo, payload_object, pull_request_info, push_commit_info
from client.intake import WebhookError, checked_branch, checked_commit, json_object, media_type
from shared.config import RepositoryConfig
from pbft.build import COMMIT_SHA, Operation

# GitHub GUIDs, Gitea UUIDs and GitLab idempotency keys all fit easily.
_DELIVERY_ID = re.compile(r"[!-~]{1,128}")
_ZERO_COMMIT = re.compile(r"0{40}|0{64}")
_MAX_NAME_CHARS = 1024  # longer "names" and URLs in a payload are not compared at all


@dataclass(frozen=True)
class Forge:
    name: str
    event_headers: tuple[str, ...]  # the first present one is used
    delivery_headers: tuple[str, ...]
    push_events: frozenset[str]
    ping_events: frozenset[str]
    # Pull (merge) request events, and the actions of theirs that build: a new request,
    # new commits on it, a request reopened. An edited title builds nothing.
    pull_events: frozenset[str]
    pull_actions: frozenset[str]


# Gitea and Forgejo also send GitHub's headers for compatibility, so they are
# recognised first; GitLab sends only its own.
FORGES = (
    Forge(
        "gitea",
        ("X-Forgejo-Event", "X-Gitea-Event"),
        ("X-Forgejo-Delivery", "X-Gitea-Delivery"),
        frozenset({"push"}),
        frozenset(),
        # New commits on a pull request come as their own event.
        frozenset({"pull_request", "pull_request_sync"}),
        frozenset({"opened", "synchronized", "reopened"}),
    ),
    Forge(
        "gitlab", ("X-Gitlab-Event",), ("Idempotency-Key",), frozenset({"Push Hook", "Tag Push Hook"}), frozenset(),
        frozenset({"Merge Request Hook"}), frozenset({"open", "update", "reopen"}),
    ),
    Forge(
        "github", ("X-GitHub-Event",), ("X-GitHub-Delivery",), frozenset({"push"}), frozenset({"ping"}),
        frozenset({"pull_request"}), frozenset({"opened", "synchronize", "reopened"}),
    ),
)
MAX_PULL_REQUEST = 10**10 - 1  # PULL_REF's bound: ten digits


@dataclass(frozen=True)
class Build:
    """An authenticated push or pull request to build; `delivery_id` deduplicates redeliveries.
    `fork`: a pull request from another repository than the one it targets. `commit_info`:
    what the payload says of the commit, for the build's record; shown, never built, so two
    deliveries of one operation are the same build whatever they say of it."""

    operation: Operation
    delivery_id: str | None
    fork: bool = False
    commit_info: CommitInfo | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Pong:
    repository: str


@dataclass(frozen=True)
class Ignored:
    """A delivery acknowledged with 202 that builds nothing, and why."""

    reason: str


Delivery = Build | Pong | Ignored


def forge_of(headers: Mapping[str, str]) -> Forge | None:
    """The forge whose event header is present, or None for the plain `{"branch": ...}` call."""
    headers = CIMultiDict(headers)
    return next((forge for forge in FORGES if any(name in headers for name in forge.event_headers)), None)


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(_utf8(secret), body, hashlib.sha256).hexdigest()


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac_sha256_hex(secret, body)


def parse_delivery(
    forge: Forge, body: bytes, headers: Mapping[str, str], repositories: Sequence[RepositoryConfig]
) -> Delivery:
    """What a forge delivery asks for, or WebhookError with a 4xx and a reason."""
    headers = CIMultiDict(headers)
    event = _first(headers, forge.event_headers) or ""
    if event not in forge.push_events | forge.ping_events | forge.pull_events:
        return Ignored(f"{forge.name} event {event[:40]!r} is not built")
    payload = _payload(body, headers.get("Content-Type", ""))
    repository = _matching_repository(forge, payload, repositories)
    _authenticate(forge, headers, body, repository.secret)
    if event in forge.ping_events:
        return Pong(repository.name)
    if event in forge.pull_events:
        return _pull_request(forge, payload, repository, _delivery_id(forge, headers))
    return _push(forge, payload, repository, _delivery_id(forge, headers))


def _payload(body: bytes, content_type: str) -> dict:
    kind = media_type(content_type)
    if kind == "application/json":
        return json_object(body)
    if kind == "application/x-www-form-urlencoded":
        # GitHub's and Gitea's "form" option: `payload=<url-encoded JSON>`.
        return json_object(_form_payload(body))
    raise WebhookError(415, "content type must be application/json or application/x-www-form-urlencoded")


def _form_payload(body: bytes) -> bytes:
    try:
        fields = urllib.parse.parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=4, errors="strict")
    except ValueError:  # also UnicodeDecodeError, and more fields than allowed
        raise WebhookError(400, "form body is not URL-encoded") from None
    if list(fields) != ["payload"] or len(fields["payload"]) != 1:
        raise WebhookError(400, "form body must be a single payload field")
    return fields["payload"][0].encode("utf-8", "surrogatepass")


def _matching_repository(forge: Forge, payload: dict, repositories: Sequence[RepositoryConfig]) -> RepositoryConfig:
    names, urls = _names_and_urls(forge, payload)
    if not names and not urls:
        raise WebhookError(400, "payload names no repository")
    for repository in repositories:
        if repository.full_name and repository.full_name.casefold() in names:
            return repository
        if repository.url and _url_key(repository.url) in urls:
            return repository
    shown = min(names or urls)
    raise WebhookError(403, f"repository {shown[:100]!r} is not configured (match by full_name or url)")


def _names_and_urls(forge: Forge, payload: dict) -> tuple[set[str], set[str]]:
    """The payload's "owner/name" spellings (case-folded) and URL keys."""
    if forge.name == "gitlab":
        project, repository = payload_object(payload, "project"), payload_object(payload, "repository")
        names = _strings(project, "path_with_namespace")
        urls = _strings(project, "git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url", "url")
        urls |= _strings(repository, "git_http_url", "git_ssh_url", "homepage", "url")
    else:
        repository = payload_object(payload, "repository")
        names = _strings(repository, "full_name")
        urls = _strings(repository, "clone_url", "html_url", "ssh_url", "git_url", "url")
    return {name.casefold() for name in names}, {_url_key(url) for url in urls}


def _url_key(url: str) -> str:
    # Forges spell one repository as `…/repo`, `…/repo.git` and `…/repo/`;
    # hosts and GitHub paths are case-insensitive.
    return url.strip().rstrip("/").removesuffix(".git").casefold()


def _strings(data: dict, *keys: str) -> set[str]:
    values = (data.get(key) for key in keys)
    return {value for value in values if isinstance(value, str) and 0 < len(value) <= _MAX_NAME_CHARS}


def _authenticate(forge: Forge, headers: CIMultiDict, body: bytes, secret: str) -> None:
    if not secret:
        return
    if forge.name == "github":
        header, expected = "X-Hub-Signature-256", github_signature(secret, body)
    elif forge.name == "gitea":
        header = "X-Forgejo-Signature" if "X-Forgejo-Signature" in headers else "X-Gitea-Signature"
        expected = hmac_sha256_hex(secret, body)
    else:
        header, expected = "X-Gitlab-Token", secret
    given = headers.get(header)
    if given is None:
        raise WebhookError(401, f"{header} is missing and the repository has a secret")
    # Constant time, so the comparison does not reveal how much of a guess was right.
    if not hmac.compare_digest(_utf8(expected), _utf8(given)):
        raise WebhookError(401, f"{header} does not match the repository's secret")


def _utf8(text: str) -> bytes:
    # Header values may carry surrogate escapes of undecodable bytes; those
    # never match a secret, but must not raise on the way to the comparison.
    return text.encode("utf-8", "surrogatepass")


def _delivery_id(forge: Forge, headers: CIMultiDict) -> str | None:
    delivery_id = _first(headers, forge.delivery_headers)
    if delivery_id is not None and not _DELIVERY_ID.fullmatch(delivery_id):
        raise WebhookError(400, "delivery id must be 1-128 printable ASCII characters")
    return delivery_id


def _delivery(forge: Forge, delivery_id: str | None) -> str | None:
    """What the order knows a delivery by (`pbft.deliveries`): one build per delivery, however
    many of the network's clients the forge delivered it to."""
    return None if delivery_id is None else f"{forge.name}:{delivery_id}"


def _first(headers: CIMultiDict, names: tuple[str, ...]) -> str | None:
    return next((headers[name] for name in names if name in headers), None)


def _push(forge: Forge, payload: dict, repository: RepositoryConfig, delivery_id: str | None) -> Delivery:
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise WebhookError(400, "ref is required and must be a string")
    kind, _, name = ref.removeprefix("refs/").partition("/")
    if not ref.startswith("refs/") or kind not in ("heads", "tags"):
        return Ignored(f"ref {ref[:100]!r} is neither a branch nor a tag")
    what = "branch" if kind == "heads" else "tag"
    after = payload.get("after")
    if payload.get("deleted") is True or (isinstance(after, str) and _ZERO_COMMIT.fullmatch(after)):
        return Ignored(f"{what} deleted: nothing to build")
    if what == "tag" and not repository.build_tags:
        return Ignored(f"tag pushes are not built for {repository.name} (build_tags is off)")
    # GitLab's `after` may be a tag object; `checkout_sha` is the commit. On
    # the others `after` is the pushed ref's new value, which the nodes peel
    # to a commit. The tag's name rides in the branch field: with a commit
    # given, the nodes build that commit and use the name only as a label.
    commit = payload.get("checkout_sha") if forge.name == "gitlab" else after
    operation = Operation(
        repository.name, checked_branch(name), checked_commit(commit),
        event=None if what == "branch" else "tag", before=_before(payload.get("before")),
        actor=forge_sender(forge.name, payload), delivery=_delivery(forge, delivery_id),
    )
    info = push_commit_info(forge.name, payload, repository, operation.commit)
    return Build(operation, delivery_id, commit_info=info)


def _before(value) -> str | None:
    """A commit to count changed paths from, if the payload names one (a new branch names none).
    Only `when: path` reads it, so a malformed one is dropped rather than the delivery refused."""
    if not isinstance(value, str) or _ZERO_COMMIT.fullmatch(value) or not COMMIT_SHA.fullmatch(value):
        return None
    return value


def _pull_request(forge: Forge, payload: dict, repository: RepositoryConfig, delivery_id: str | None) -> Delivery:
    """A pull (merge) request's head to build, by its forge ref, pinned to the head commit
    the forge reported; its target branch rides in the branch field, as a label."""
    if forge.name == "gitlab":
        request = payload_object(payload, "object_attributes")
        action, number = request.get("action"), request.get("iid")
        head, target = payload_object(request, "last_commit").get("id"), request.get("target_branch")
        source, into = request.get("source_project_id"), request.get("target_project_id")
        fork = not (isinstance(source, int) and source == into)
        ref_kind = "merge-requests"
        # A merge request hook names no base commit: its changed paths are not counted.
        before = None
    else:
        request = payload_object(payload, "pull_request")
        action, number = payload.get("action"), payload.get("number", request.get("number"))
        head_side, base_side = payload_object(request, "head"), payload_object(request, "base")
        head, target = head_side.get("sha"), base_side.get("ref")
        # A head repository that is gone (a deleted fork) counts as a fork.
        source = payload_object(head_side, "repo").get("full_name")
        fork = not (isinstance(source, str) and source == payload_object(base_side, "repo").get("full_name"))
        ref_kind = "pull"
        # Gitea's merge base is an ancestor of the head by definition; GitHub's base is the
        # target's head, an ancestor while the target has not moved on since the branch.
        before = request.get("merge_base") or base_side.get("sha")
    if action not in forge.pull_actions:
        return Ignored(f"pull request action {str(action)[:40]!r} is not built")
    if forge.name == "gitlab" and action == "update" and "oldrev" not in request:
        # GitLab sends "update" for any edit; `oldrev` is there only when commits were pushed.
        return Ignored("merge request updated without new commits: nothing to build")
    if type(number) is not int or not 1 <= number <= MAX_PULL_REQUEST:
        raise WebhookError(400, "the pull request's number must be a positive integer")
    operation = Operation(
        repository.name, checked_branch(target), checked_commit(head), pull_ref=f"refs/{ref_kind}/{number}/head",
        event="pull_request", before=_before(before), actor=forge_sender(forge.name, payload),
        delivery=_delivery(forge, delivery_id),
    )
    info = pull_request_info(forge.name, payload, repository, operation.commit)
    return Build(operation, delivery_id, fork=fork, commit_info=info)
