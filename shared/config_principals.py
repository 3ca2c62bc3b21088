"""Who takes part in a network: its nodes, its clients, the mail server a client sends
notifications through, and the action runners a client takes reports from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from shared.config_engines import DockerEngineConfig
from pbft.networkchange import MAX_OWNERS
from shared.config_files import OwnerKeyFile, PublicKeyFile, SecretFile
from shared.config_values import (
    CLIENT_TOKEN, EMAIL, HOST, HTTP_URL, PORT, PUBLIC_KEY, SECRET, USER_NAME, is_loopback_host, name_of,
)
from shared.schema import Bool, Choice, FilePath, Inline, Int, ListOf, Number, Section, Text, section, setting

# A client's action runners (clients[].runners): a few keys at once, e.g. the old and the new
# one while a runner's key is replaced.
MAX_RUNNERS = 8
# What a caller may do on a repository (client.access), each role including the ones before it.
ROLES = ("read", "trigger", "operate", "approve", "admin")
MAX_GRANTS = 256
# A person's or a group's name as a grant names it: what an actor's name may be (pbft.build.ACTOR_NAME).
_PERSON = Text(re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:/-]{0,127}"),
               what="a plain name (letters, digits and ._@+:/-, at most 128)")
_KEY_DOC = "Ed25519, 64 hex digits; a file that does not exist yet is no key while keys are being generated"


@section
class NodeConfig:
    """A node of the network: where it listens and the key its messages are signed with."""

    id: int = setting(Int(minimum=0), doc="a number of its own, 0 or more, kept for good: a node that joins takes a new one; "
                                               "the primary of view v is the (v mod n)-th node in the order of ids")
    host: str = setting(HOST, doc="where it listens and where peers and the client reach it")
    port: int = setting(PORT, doc="its one port: peers, the client, status, metrics, logs")
    public_key: str = setting(PUBLIC_KEY, file=PublicKeyFile(), doc=_KEY_DOC)
    docker: DockerEngineConfig = setting(
        Inline(DockerEngineConfig, "docker_"), default=DockerEngineConfig(), local=True,
        doc="its own build engine (docker_host, docker_tls), in place of build's",
    )
    scheme: str = "http"  # "https" in a network with `tls:`

    def url(self, path: str) -> str:
        """`path` on this node (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"


@section
class RunnerKeyConfig:
    """An action runner a client takes signed reports of actions after a verdict from (shared/actionreport.py)."""

    # Each report is signed with the runner's own Ed25519 key, so the client's bearer token
    # alone cannot write one.
    name: str = setting(name_of("runner name"),
                        doc="the runner's `name` in its own configuration; its key file is runner-<name>.key")
    public_key: str = setting(PUBLIC_KEY, file=PublicKeyFile(), doc=_KEY_DOC)


def _grant_problems(grant: GrantConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    if not grant.users and not grant.groups:
        yield "users", "a grant names users, groups or both: this one gives its role to nobody"


@section(check=_grant_problems)
class GrantConfig:
    """A role on some repositories, or on every one, for some people: whom a personal token
    made without a role acts for, and a person signed in."""

    role: str = setting(Choice(ROLES, what="a role"), doc="read, trigger, operate, approve or admin, each including "
                                                          "the ones before it")
    users: tuple[str, ...] = setting(ListOf(_PERSON, unique=True), default=(), doc="people by name")
    groups: tuple[str, ...] = setting(ListOf(_PERSON, unique=True), default=(), doc="groups, as sign-in names them")
    repositories: tuple[str, ...] = setting(ListOf(name_of("repository name"), unique=True), default=(),
                                            doc="where the role holds; none: every repository")


@section
class OwnerKeyConfig:
    """An owner of the network: one of the keys that sign a change of its network document."""

    name: str = setting(name_of("owner name"), doc="names the owner in a change's signatures")
    public_key: str = setting(PUBLIC_KEY, file=OwnerKeyFile(),
                              doc="Ed25519, 64 hex digits, or a file of them or of the in-toto owner.pub (PEM)")


def _owners_problems(owners: OwnersConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    if owners.threshold > len(owners.keys):
        yield "threshold", f"must be at most the number of keys ({len(owners.keys)})"


@section(check=_owners_problems)
class OwnersConfig:
    """Who may change the network document through the order: k of these keys sign each change."""

    threshold: int = setting(Int(minimum=1), doc="k: the owners whose signatures a change needs")
    keys: tuple[OwnerKeyConfig, ...] = setting(
        ListOf(Section(OwnerKeyConfig), min_items=1, max_items=MAX_OWNERS, unique="name"),
        doc="the owners' public keys (m of them)",
    )


def _smtp_problems(smtp: SMTPConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    if ("user" in given) != ("password" in given):
        yield ("user" if "password" in given else "password_file"), "user and password_file go together: a login " \
                                                                    "needs both"
    if smtp.user and not smtp.starttls and smtp.host and not is_loopback_host(smtp.host):
        yield "starttls", f"must be true to log in to {smtp.host}: without it the password crosses the network in " \
                          "the clear"
    if smtp.ca_file is not None and not smtp.starttls:
        yield "ca_file", "is only for starttls"


@section(check=_smtp_problems)
class SMTPConfig:
    """The mail server a client sends the repositories' notification e-mails through (client/notifications.py)."""

    host: str = setting(HOST, doc="the mail server's host name or IP address")
    from_address: str = setting(EMAIL, key="from", doc="the sender's address (e.g. pbft-ci@example.org)")
    port: int = setting(PORT, default=25, doc="587 is the usual submission port, with starttls")
    starttls: bool = setting(Bool(), default=False, doc="upgrade with STARTTLS first and check the server's "
                                                        "certificate (against ca_file, else the system's CAs)")
    ca_file: Path | None = setting(FilePath(), default=None,
                                   doc="the CA a private mail server's certificate chains to; only with starttls")
    user: str = setting(USER_NAME, default="", doc="log in as this user; needs starttls unless host is a loopback "
                                                   "address")
    password: str = setting(SECRET, default="", file=SecretFile(), local=True, doc="the user's password, better kept in "
                                                                       "password_file")
    timeout_s: float = setting(Number(above=0), default=30.0,
                               doc="the longest one connection, or one command on it, may take")


@section
class SignInConfig:
    """Signing people in through the team's OpenID Connect provider (client/signin.py):
    authorization code with PKCE; the provider's claims name the person and their groups,
    and the client's grants give them roles."""

    issuer: str = setting(HTTP_URL, doc="the provider's issuer URL, as its /.well-known/openid-configuration "
                                        "names it (https, but on loopback); GitHub: https://github.com, or the "
                                        "server of a GitHub Enterprise")
    client_id: str = setting(Text(re.compile(r"[!-~]{1,255}"), what="a client id (printable ASCII, no spaces)"),
                             doc="this client's id at the provider")
    client_secret: str = setting(SECRET, default="", file=SecretFile(), local=True,
                                 doc="this client's secret at the provider, better kept in client_secret_file")
    scopes: tuple[str, ...] = setting(
        ListOf(Text(re.compile(r"[A-Za-z0-9_.:/-]{1,64}"), what="a scope"), unique=True, max_items=16),
        default=("openid", "profile", "email"), doc="asked for at sign-in; openid is added if missing")
    username_claim: str = setting(Text(re.compile(r"[A-Za-z0-9_.:-]{1,64}"), what="a claim's name"),
                                  default="preferred_username",
                                  doc="the claim that names the person (its value must be a plain name)")
    groups_claim: str = setting(Text(re.compile(r"(?:[A-Za-z0-9_.:/-]{1,64})?"), what="a claim's name"),
                                default="groups", doc="the claim that lists their groups; empty: none")
    session_hours: float = setting(Number(above=0), default=12.0, doc="how long a sign-in lasts")
    provider: str = setting(Choice(("oidc", "github"), what="a kind of provider"), default="oidc",
                            doc="oidc: any OpenID Connect provider; github: GitHub's OAuth flow, the person their "
                                "login, their groups their organizations and <org>/<team>s")
    api_url: str = setting(HTTP_URL, default="", doc="GitHub only: its REST API; default https://api.github.com, "
                                                     "or <issuer>/api/v3 for any other issuer")


def _client_problems(client: ClientConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    # Only processes on the client's own machine can reach a loopback address.
    if client.plain_without_token and client.host and not is_loopback_host(client.host):
        yield "plain_without_token", (f"only allowed when host is a loopback address (127.0.0.0/8, ::1, localhost), "
                                      f"not {client.host}; set token_file instead")


# A network's clients take their build ids (their requests' timestamps) from lanes of their
# own: a client's are congruent to its lane modulo BUILD_ID_LANES, so that a build one
# client asked for, which every other client imports (client/ledgerimport.py), never takes
# the id of one of theirs. A client's lane is the place of its name among the clients' names.
BUILD_ID_LANES = 16


@section(check=_client_problems)
class ClientConfig:
    """A client: it takes webhooks, signs requests to the nodes and collects their replies."""

    name: str = setting(name_of("client name"), doc="signs its requests under this name")
    host: str = setting(HOST, doc="where it listens for webhooks and serves the dashboard")
    port: int = setting(PORT, doc="its one port (8080 in the example)")
    public_key: str = setting(PUBLIC_KEY, file=PublicKeyFile(), doc=_KEY_DOC)
    max_body_bytes: int = setting(Int(minimum=1), default=1_048_576, local=True,
                                  doc="webhook bodies above this are refused with 413")
    public_url: str = setting(HTTP_URL, default="", local=True,
                              doc="base of the links handed to forges and notifications; default http://host:port")
    token: str = setting(CLIENT_TOKEN, default="", file=SecretFile(), local=True,
                         doc="the machine token: `Authorization: Bearer <token>` acts as admin; "
                             "without one, reads are open")
    plain_without_token: bool = setting(Bool(), default=False, local=True,
                                        doc="take plain calls without a token: only on a loopback host")
    public_badges: bool = setting(Bool(), default=False, local=True,
                                  doc="serve the status badges without the token, for READMEs")
    body_timeout_s: float = setting(Number(above=0), default=10.0, local=True,
                                    doc="a body not received in full by then is answered 408")
    # Live log follows and artifact downloads at once, in all and per caller (client.transfers):
    # beyond them 503 and 429. A dashboard build page follows one log per node.
    max_follows: int = setting(Int(minimum=1), default=256, local=True, doc="live log follows at once, beyond which 503")
    max_follows_per_caller: int = setting(Int(minimum=1), default=64, local=True,
                                          doc="live log follows one caller (address) has at once, beyond which 429")
    max_downloads: int = setting(Int(minimum=1), default=16, local=True,
                                 doc="artifact downloads at once, each spooling up to build.artifacts_mb")
    max_downloads_per_caller: int = setting(Int(minimum=1), default=4, local=True,
                                            doc="artifact downloads one caller (address) has at once")
    smtp: SMTPConfig | None = setting(Section(SMTPConfig), default=None, local=True,
                                      doc="the mail server notification e-mails go through")
    sign_in: SignInConfig | None = setting(Section(SignInConfig), default=None, local=True,
                                           doc="people sign in through an OpenID Connect provider")
    grants: tuple[GrantConfig, ...] = setting(
        ListOf(Section(GrantConfig), max_items=MAX_GRANTS), default=(), local=True,
        doc="who has which role on which repositories, beside the machine token (docs: roles)",
    )
    runners: tuple[RunnerKeyConfig, ...] = setting(
        ListOf(Section(RunnerKeyConfig), max_items=MAX_RUNNERS, unique="name"), default=(),
        doc="the action runners whose signed reports the client records; none: it refuses every report",
    )

    def runner(self, name: str) -> RunnerKeyConfig | None:
        return next((runner for runner in self.runners if runner.name == name), None)

    @property
    def base_url(self) -> str:
        """What links handed to forges start with (status target URLs, a delivery's status URL):
        `public_url`, else the configured address, never a request's Host header, which a
        caller makes up. Behind a proxy, or listening on 0.0.0.0, set `public_url`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.public_url.rstrip("/") or f"http://{host}:{self.port}"

