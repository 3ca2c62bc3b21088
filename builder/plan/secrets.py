"""Which of its repository's secrets a build gets (docs/secrets.md), and their values.

Decided from the configuration and the agreed request's event alone, so every honest node
gives a build the same secrets: a build's plan names them (`build_secrets`), and its run reads
their values from their files when it starts (`read_secrets`), not when the node does: replacing
a file rotates a secret without a restart.

A pull request's build gets a secret only if the secret names the event `pull_request`,
which the configuration allows only with the repository's `secrets_for_forks: true`. The
request the nodes order says that a build is a pull request's, not whether its head is in
a fork (only the client saw the forge's delivery), so every pull request counts as one
from a fork: its code is anyone's, and so would the secret be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.config import BuildSecretConfig, RepositoryConfig, read_build_secret


@dataclass(frozen=True)
class RepositorySecrets:
    """A repository's secrets as its configuration names them (files, not values)."""

    secrets: tuple[BuildSecretConfig, ...]
    for_forks: bool = False

    @classmethod
    def of(cls, repository: RepositoryConfig) -> RepositorySecrets:
        return cls(repository.secrets, repository.secrets_for_forks)


class SecretUnreadable(Exception):
    """A secret this build gets could not be read on this node: the node's trouble, an `error`."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"secret {name} could not be read on this node")
        self.reason = str(self)
        self.detail = detail


@dataclass(frozen=True)
class BuildSecrets:
    """The secrets one build gets, as the configuration names them (files, not values), and the
    names of those it does not get: decided before the build runs, read when it starts."""

    event: str
    given: tuple[BuildSecretConfig, ...] = ()
    withheld: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(secret.name for secret in self.given)

    def settings(self) -> str:
        """The build log's word on them: names only, never a value."""
        given = f"secrets {', '.join(self.names)}" if self.given else "no secrets"
        if self.withheld:
            given += f" ({', '.join(self.withheld)} not given to {self.event} builds)"
        return given


def trigger_of(event: str, pull_ref: str | None) -> str:
    """The event a build's secrets are chosen for: a build of a pull request's ref is a pull
    request's, whatever else its request says."""
    return "pull_request" if pull_ref is not None else event


def build_secrets(configured: RepositorySecrets | None, event: str, pull_ref: str | None) -> BuildSecrets:
    """The secrets a build of `event` (of `pull_ref`, for a pull request) gets."""
    trigger = trigger_of(event, pull_ref)
    if configured is None:
        return BuildSecrets(trigger)
    given, withheld = [], []
    for secret in configured.secrets:
        (given if _given(secret, trigger, configured.for_forks) else withheld).append(secret)
    return BuildSecrets(trigger, tuple(given), tuple(secret.name for secret in withheld))


def read_secrets(secrets: BuildSecrets) -> dict[str, str]:
    """The values of the secrets a build gets, by name, read now from their files;
    SecretUnreadable for the first that cannot be."""
    return {secret.name: _value(secret.name, secret.file) for secret in secrets.given}


def _given(secret: BuildSecretConfig, trigger: str, for_forks: bool) -> bool:
    if trigger not in secret.events:
        return False
    # The configuration refuses pull_request without secrets_for_forks; this holds whatever built it.
    return trigger != "pull_request" or for_forks


def _value(name: str, path: Path) -> str:
    try:
        return read_build_secret(path)
    except ValueError as error:
        raise SecretUnreadable(name, f"secret {name}: {error}\n") from None
