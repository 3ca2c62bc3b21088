"""Parse and validate the body of a `POST /webHook`.

The body is untrusted: it comes from a forge or from anyone who can reach
the client's port. Everything that reaches the network is checked here, and
every rejection carries an HTTP status and a reason the caller can act on.
Repository URLs are never taken from the body, only configured names.
"""

from __future__ import annotations

import json
from typing import Sequence

from pbft.build import INPUT_NAME, INPUT_VALUE, MAX_INPUTS, Operation
from shared.refs import check_branch_name, check_commit_sha

# The plain call is a few dozen bytes; forge payloads, which list commits,
# are capped separately by the client's `max_body_bytes`.
MAX_BODY_BYTES = 64 * 1024
# `curl -d '{"branch": "x"}'` labels its JSON body as a form, so that label
# is accepted too; the body is parsed as JSON either way.
ACCEPTED_CONTENT_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded"})
KNOWN_KEYS = frozenset({"branch", "repository", "commit", "inputs"})
# An unknown repository's answer names the configured ones, up to this many.
MAX_NAMED_REPOSITORIES = 20


class WebhookError(Exception):
    """A webhook the client refuses, with the HTTP status to answer.

    `headers` go on the answer (e.g. WWW-Authenticate with a 401);
    `close_connection` asks for the connection to be closed once the answer
    is sent, for callers that must not hold it any longer (a body too slow).
    """

    def __init__(
        self, status: int, reason: str, *, headers: dict[str, str] | None = None, close_connection: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.close_connection = close_connection


def media_type(content_type_header: str) -> str:
    """`application/json; charset=utf-8` → `application/json`."""
    return content_type_header.split(";", 1)[0].strip().lower()


def parse_webhook(body: bytes, content_type_header: str, repositories: Sequence[str]) -> Operation:
    """Return the operation a webhook body asks for, or raise WebhookError.

    `repositories` are the configured repository names; the first is the
    default when the body names none.
    """
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    if media_type(content_type_header) not in ACCEPTED_CONTENT_TYPES:
        raise WebhookError(415, "content type must be application/json")
    data = json_object(body)
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise WebhookError(400, f"unknown keys: {', '.join(repr(key)[:40] for key in unknown[:5])}")
    return Operation(
        repository=_repository(data, repositories),
        branch=_branch(data),
        commit=_commit(data),
        event="manual",
        inputs=checked_inputs(data.get("inputs")),
    )


def json_object(body: bytes) -> dict:
    """The JSON object in `body`, or WebhookError 400 saying why there is none."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise WebhookError(400, "body is not UTF-8") from None
    except ValueError as error:
        raise WebhookError(400, f"body is not valid JSON: {error}") from None
    except RecursionError:
        # The C scanner recurses once per nesting level; a 64 KiB body of
        # brackets is deep enough to exhaust the stack.
        raise WebhookError(400, "body is nested too deeply") from None
    if not isinstance(data, dict):
        raise WebhookError(400, "body must be a JSON object")
    return data


def _branch(data: dict) -> str:
    branch = data.get("branch")
    if not isinstance(branch, str):
        raise WebhookError(400, "branch is required and must be a string")
    return checked_branch(branch)


def checked_branch(name: str) -> str:
    """`name` if it is an acceptable branch name (shared.refs), else WebhookError 400."""
    try:
        check_branch_name(name)
    except ValueError as error:
        raise WebhookError(400, str(error)) from None
    return name


def checked_commit(commit: object) -> str:
    """`commit` if it is a full commit id, else WebhookError 400."""
    try:
        check_commit_sha(commit)
    except ValueError as error:
        raise WebhookError(400, str(error)) from None
    return commit


def _repository(data: dict, repositories: Sequence[str]) -> str:
    if "repository" not in data:
        return repositories[0]
    repository = data["repository"]
    if not isinstance(repository, str):
        raise WebhookError(400, "repository must be a string")
    if repository not in repositories:
        raise WebhookError(400, unknown_repository(repository, repositories))
    return repository


def unknown_repository(asked: str, repositories: Sequence[str]) -> str:
    """Why a request for repository `asked` (untrusted: cut and quoted) is refused, with the
    configured names (checked by shared.config) and how a repository just added is served."""
    shown = ", ".join(repositories[:MAX_NAMED_REPOSITORIES])
    if len(repositories) > MAX_NAMED_REPOSITORIES:
        shown += f" and {len(repositories) - MAX_NAMED_REPOSITORIES} more"
    return (f"unknown repository {asked[:80]!r}: this client builds {shown}. A repository added to its "
            "configuration file is served once the client re-reads it: kill -HUP <client pid> "
            "(or ./scripts/reload.sh --client), and every node likewise (./scripts/reload.sh)")


def checked_inputs(given: object) -> tuple[tuple[str, str], ...] | None:
    """A manual run's `inputs` (`{"target": "staging", "dry_run": true}`) as the request
    carries them: names and values of the shape every node takes (pbft.build INPUT_NAME,
    INPUT_VALUE), a boolean or a number as the text the spec's reading makes of one.
    Whether the spec at the commit declares them is for the nodes to say: the client reads
    no spec."""
    if given is None or given == {}:
        return None
    if not isinstance(given, dict):
        raise WebhookError(400, "inputs must be an object of input names to values")
    if len(given) > MAX_INPUTS:
        raise WebhookError(400, f"inputs: at most {MAX_INPUTS}")
    checked = []
    for name, value in given.items():
        if not INPUT_NAME.fullmatch(name):
            raise WebhookError(400, f"inputs: {name[:40]!r} is not an input's name "
                                    "(1 to 32 lowercase letters, digits and _, starting with a letter)")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or not INPUT_VALUE.fullmatch(value):
            raise WebhookError(400, f"inputs: {name} must be one line of at most 1024 characters, "
                                    "without control characters")
        checked.append((name, value))
    return tuple(checked)


def _commit(data: dict) -> str | None:
    # An explicit null means the same as no commit: build the branch head.
    commit = data.get("commit")
    if commit is None:
        return None
    return checked_commit(commit)
