"""Who asks for a request: the actor (`pbft.build.Actor`) the client signs into it.

The client authenticates callers (client.access) and forges (client.forges);
the nodes take its word for who asked, as they take its word for what, and
every ledger, certificate and attestation then names the same actor. A name
that is not plain (`ACTOR_NAME`) is never passed on: a forge account whose
login is not is named by its forge alone.
"""

from __future__ import annotations

import dataclasses

from pbft.build import ACTOR_NAME, Actor, Operation


def machine(client_name: str) -> Actor:
    """A call made with the client's own bearer token (or on loopback, where none is set)."""
    return Actor("machine", client_name)


def scheduled(repository: str, schedule_name: str) -> Actor:
    name = f"{repository}/{schedule_name}"
    return Actor("schedule", name if ACTOR_NAME.fullmatch(name) else repository)


def forge_sender(forge: str, payload: dict) -> Actor:
    """The account that pushed or opened the pull request, as the forge's payload names it:
    `sender.login` (GitHub, Gitea, Forgejo), `user_username` or `user.username` (GitLab)."""
    login = _text(payload.get("sender"), "login") or payload.get("user_username") or _text(payload.get("user"),
                                                                                          "username")
    name = f"{forge}:{login}" if isinstance(login, str) else forge
    return Actor("forge", name if ACTOR_NAME.fullmatch(name) else forge)


def acting(operation: Operation, actor: Actor) -> Operation:
    """`operation`, asked for by `actor`: a re-run, an approval or a cancel is asked for by
    whoever made it, not by whoever asked for the build it acts on."""
    return dataclasses.replace(operation, actor=actor)


def _text(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, dict) else None
