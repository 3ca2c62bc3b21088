"""Network configuration: YAML in, frozen dataclasses out.

`load_config` validates the whole file and reports every problem at once,
each with its path in the file (`nodes[2].port: ...`), so an operator fixes a
configuration in one pass. Relative paths are resolved against the folder
that holds the configuration file.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any, Callable

import yaml
from croniter import croniter

from shared.boundedread import (
    MAX_CERTIFICATE_FILE_BYTES, MAX_CONFIG_BYTES, MAX_SECRET_FILE_BYTES, read_bounded,
)
from shared.crypto import parse_public_key
from shared.refs import check_branch_name
from shared.secretmask import MIN_FORM_CHARS
from pbft.build import EVENTS
from pbft.provenance import builder_id
from pbft.slot import ReplicaSettings

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Repository URLs come only from here. Remote schemes are the ones git
# speaks without running a helper program; anything else must be a path.
_URL = re.compile(r"(https?|ssh|git|file)://[^\s]+|[^\s-][^\s]*")
_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_STATUS_STYLE = re.compile(r"github|gitlab")
_FULL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
# A bearer token travels in an HTTP header: visible ASCII only, and long
# enough (e.g. `openssl rand -hex 32`) that guessing it is hopeless.
_TOKEN = re.compile(r"[!-~]+")
MIN_TOKEN_CHARS = 32
# Where a node's builds run: a Docker engine on its own machine (unix://), or
# elsewhere over TLS with client certificates (tcp://) or over ssh (ssh://).
_DOCKER_SCHEMES = ("unix", "tcp", "ssh")
_DOCKER_KEYS = ("docker_host", "docker_tls")
_DOCKER_TLS_FILES = ("ca_file", "cert_file", "key_file")
# ssh's own user-name rules are looser; this is what fits a URL without quoting
# and can never be read as an ssh option.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")
_CLIENT_KEYS = frozenset({
    "name", "host", "port", "public_key", "public_key_file", "max_body_bytes", "public_url",
    "token", "token_file", "plain_without_token", "body_timeout_s", "public_badges",
    "max_follows", "max_follows_per_caller", "max_downloads", "max_downloads_per_caller", "smtp", "runners",
})
# A client's action runners (clients[].runners): a few keys at once, e.g. the old and the new
# one while a runner's key is replaced.
MAX_RUNNERS = 8
_REPOSITORY_KEYS = frozenset({
    "name", "url", "full_name", "secret", "secret_file", "build_tags", "build_forks", "auto_cancel",
    "max_concurrent", "status_api", "status_style", "status_token", "status_token_file", "status_context",
    "node_statuses", "node_status_token_file", "build_network", "submodules", "schedules", "notify", "secrets",
    "secrets_for_forks", "skipped_passes",
})
# An e-mail address as notifications take one: a plain addr-spec, no display name, no
# quoting, nothing that could end a header or start another recipient (CR, LF, comma, <, >).
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# What a notification may be sent for (client/notifications.py): an accepted result's status, or one
# of the verdicts without an agreed result. `timeout` is a build that ran out of its own time
# (f+1 nodes agree on that); `no_quorum` is no f+1 nodes agreeing before the client's deadline.
# A `matrix` result is not among them: each of its combinations' builds has a verdict of its own.
NOTIFY_STATUSES = ("success", "failure", "error", "timeout", "skipped", "cancelled", "divergent", "disputed",
                   "no_quorum")
MAX_NOTIFY_TARGETS = 16
MAX_EMAIL_RECIPIENTS = 16
_NOTIFY_KEYS = frozenset({"webhook", "secret", "secret_file", "email", "on", "branches"})
_SMTP_KEYS = frozenset({"host", "port", "from", "starttls", "ca_file", "user", "password", "password_file",
                        "timeout_s"})


def per_node(template: str, node_id: int) -> str:
    """A setting that names one file per node: "{id}" in it stands for the node's id."""
    return template.replace("{id}", str(node_id))


class ConfigError(Exception):
    """Every problem of a configuration file, one line each, each naming the file and the
    key (`network.yaml: nodes[2].port: must be at most 65535`), as compilers report."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))


@dataclass(frozen=True)
class DockerTLSConfig:
    """A tcp:// engine's CA (the node checks the engine) and the node's client certificate (the engine checks the node)."""

    ca_file: Path  # the CA the engine's certificate must chain to
    cert_file: Path  # the node's client certificate
    key_file: Path  # its key


@dataclass(frozen=True)
class NodeTLSConfig:
    """HTTPS and WSS on every node's port (`tls:`), for a network whose client-to-node and
    node-to-node traffic must stay confidential on the wire. Each node serves its own
    certificate; the client and the peers trust `ca_file` alone and check that the
    certificate names the host the configuration gives for the node. "{id}" in
    `cert_file` and `key_file` stands for the node's id."""

    ca_file: Path  # the only CA the client and the peers trust for nodes
    cert_file: Path  # each node's certificate, naming its host
    key_file: Path  # each node's private key

    def node_files(self, node_id: int) -> tuple[Path, Path]:
        return Path(per_node(str(self.cert_file), node_id)), Path(per_node(str(self.key_file), node_id))

    def server_context(self, node_id: int) -> ssl.SSLContext:
        """What node `node_id` serves with. Raises OSError or ssl.SSLError for unreadable files."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key = self.node_files(node_id)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What the client and the peers reach the nodes with: `ca_file` alone, hosts checked."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


@dataclass(frozen=True)
class DockerEngineConfig:
    """The Docker engine a node runs its builds on.

    `host` "" is the environment's engine (DOCKER_HOST, else the local
    socket), as `docker.from_env()` finds it. `tls` is set for, and only for,
    a tcp:// host.
    """

    host: str = ""
    tls: DockerTLSConfig | None = None


@dataclass(frozen=True)
class NodeConfig:
    id: int  # 0..n-1, each once; the primary of view v is node v mod n
    host: str  # where it listens and where peers and the client reach it
    port: int  # its one port: peers, the client, status, metrics, logs
    public_key: str  # Ed25519, 64 hex digits; "" only while keys are being generated
    # Its own entry's docker_host, else build.docker_host, else the environment's.
    docker: DockerEngineConfig = field(default_factory=DockerEngineConfig)
    scheme: str = "http"  # "https" in a network with `tls:`

    def url(self, path: str) -> str:
        """`path` on this node (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{path}"


@dataclass(frozen=True)
class ClientConfig:
    name: str  # signs its requests under this name
    host: str  # where it listens for webhooks and serves the dashboard
    port: int  # 8080 in the example
    public_key: str  # Ed25519, 64 hex digits, as for nodes
    max_body_bytes: int = 1_048_576  # webhook bodies above this are refused with 413
    public_url: str = ""  # base of the status URLs given to forges; default http://host:port
    # Plain webhook calls and the build records need `Authorization: Bearer <token>`
    # when a token is set. Kept out of the repr so a printed config does not leak it.
    token: str = field(default="", repr=False)
    # Without a token, plain calls are refused unless this is set, which only a
    # loopback host may do: then only processes on the machine can reach the client.
    plain_without_token: bool = False
    # Serve the status badges (GET /badge/REPOSITORY/BRANCH.svg) without the token, for
    # READMEs, which cannot send one: anyone may then read a configured branch's latest verdict.
    public_badges: bool = False
    body_timeout_s: float = 10.0  # a body not received in full by then is answered 408
    # Live log follows and artifact downloads at once, in all and per caller (client.transfers):
    # beyond them 503 and 429. A dashboard build page follows one log per node.
    max_follows: int = 256
    max_follows_per_caller: int = 64  # one caller (address) at once
    max_downloads: int = 16  # each spools up to build.artifacts_mb on disk while it is checked
    max_downloads_per_caller: int = 4  # one caller (address) at once
    smtp: SMTPConfig | None = None  # the mail server notification e-mails go through (see clients[].smtp)
    # The action runners (runner/) whose signed reports of actions after a verdict the client
    # records (see clients[].runners[]); none: `POST /builds/<id>/actions` refuses every report.
    runners: tuple[RunnerKeyConfig, ...] = ()

    def runner(self, name: str) -> RunnerKeyConfig | None:
        return next((runner for runner in self.runners if runner.name == name), None)

    @property
    def base_url(self) -> str:
        """What links handed to forges start with (status target URLs, a delivery's status URL):
        `public_url`, else the configured address, never a request's Host header, which a
        caller makes up. Behind a proxy, or listening on 0.0.0.0, set `public_url`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return self.public_url.rstrip("/") or f"http://{host}:{self.port}"


@dataclass(frozen=True)
class RunnerKeyConfig:
    """An action runner a client takes reports from: each report is signed with the runner's
    own Ed25519 key (shared/actionreport.py), so the client's bearer token alone cannot write one."""

    name: str  # the runner's `name` in its own configuration; its key file is `runner-<name>.key` in keys_dir
    public_key: str  # Ed25519, 64 hex digits, as for nodes; "" only while keys are being generated


@dataclass(frozen=True)
class SMTPConfig:
    """The mail server a client sends the repositories' notification e-mails through (client/notifications.py)."""

    host: str  # the mail server's host name or IP address
    from_address: str  # the sender's address (e.g. pbft-ci@example.org)
    port: int = 25  # 587 is the usual submission port, with starttls
    # Upgrade the connection with STARTTLS before anything else is said, and check the
    # server's certificate (against ca_file, else the system's CAs) and host name.
    starttls: bool = False
    ca_file: Path | None = None  # the CA a private mail server's certificate chains to
    user: str = ""  # log in as this user; needs starttls unless host is a loopback address
    password: str = field(default="", repr=False)  # the user's password; kept in password_file, out of the YAML
    timeout_s: float = 30.0  # the longest one connection, or one command on it, may take


@dataclass(frozen=True)
class NotifyConfig:
    """One place the client tells of a repository's verdicts (client/notifications.py): a webhook or
    a list of e-mail addresses. Every notification carries the verdict, each node's result and
    links to the build's page and certificate."""

    webhook: str = ""  # an http(s) URL the verdict is POSTed to as JSON, signed with `secret`
    # A webhook's HMAC-SHA256 key (at least 32 characters, e.g. openssl rand -hex 32), better
    # kept in secret_file: the receiver checks each delivery's X-PBFT-CI-Signature-256 with it.
    secret: str = field(default="", repr=False)
    email: tuple[str, ...] = ()  # addresses the verdict is mailed to (one, or a list), through the client's smtp
    # The verdicts told of: success, failure, error, timeout, skipped, cancelled, divergent,
    # disputed, no_quorum (no f+1 nodes agreed before the deadline); all of them by default.
    on: tuple[str, ...] = NOTIFY_STATUSES
    branches: tuple[str, ...] = ()  # only builds of these branches (a pull request's: its target); none: all


@dataclass(frozen=True)
class ScheduleConfig:
    name: str  # names the schedule in the client's log and records; unique within its repository
    cron: str  # when, in UTC: five fields (minute hour day month weekday) or @hourly, @daily, @weekly, ...
    branch: str  # what each run builds: the branch's head when the schedule fires


# A schedule fires at most once a minute; more of them per repository would be a flood, not a plan.
MAX_SCHEDULES = 16

# A build secret is an environment variable of the build (docs/secrets.md). Names the node
# sets itself (the CI variables, HOME, the reproducible environment), PBFT_CI_* (the node's
# own, e.g. its flaky mode's) and what every shell relies on are not a secret's to replace.
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_RESERVED_SECRET_NAME = re.compile(r"CI|CI_.*|PBFT_CI.*|HOME|USER|LOGNAME|PATH|SHELL|SOURCE_DATE_EPOCH|TZ|LC_ALL|LANG")
# A value shorter than this would be masked wherever those few characters appear in a build's
# output (a 1-character secret would mask every "a"); the masker's shortest form is as long.
MIN_SECRET_CHARS = MIN_FORM_CHARS
# A private key in PEM fits; every form of a value is looked for in every build's output.
MAX_SECRET_CHARS = 8192
# The events whose builds get a secret unless it names others: not pull_request, whose code
# anyone with a fork may write.
DEFAULT_SECRET_EVENTS = ("push", "tag", "cron", "manual")
MAX_SECRETS = 32


@dataclass(frozen=True)
class BuildSecretConfig:
    name: str  # the environment variable the build gets it as: capitals, digits and _, not CI, CI_*, PBFT_CI_*, HOME, ...
    # Where every node reads the value (relative to the configuration file): at each build's start, so
    # replacing the file rotates it without a restart; nodes check it when they start too. One trailing
    # line break is not part of the value; at least 8 and at most 8192 characters.
    file: Path
    # The events whose builds get it (push, tag, pull_request, manual, cron). pull_request only with the
    # repository's secrets_for_forks: true.
    events: tuple[str, ...] = DEFAULT_SECRET_EVENTS


def read_build_secret(path: Path) -> str:
    """The value of a build secret kept in `path`; ValueError says what is wrong with it
    (never the value itself)."""
    try:
        data = read_bounded(path, MAX_SECRET_FILE_BYTES)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    # An editor's (or `echo`'s) final line break is not part of the value; any other is.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValueError(f"{path} is empty")
    if "\0" in value:
        raise ValueError(f"{path} holds a NUL character, which no environment variable can")
    if len(value) < MIN_SECRET_CHARS:
        # Neither message says how long the value is: it is printed where the value must not be.
        raise ValueError(f"{path} holds fewer than {MIN_SECRET_CHARS} characters: so short a value would be "
                         "masked wherever those characters appear in a build's output")
    if len(value) > MAX_SECRET_CHARS:
        raise ValueError(f"{path} holds more than {MAX_SECRET_CHARS} characters")
    return value


@dataclass(frozen=True)
class RepositoryConfig:
    name: str  # what a webhook names (never a URL)
    url: str  # what nodes fetch: a URL, or a path relative to the file
    # Forge integration (all optional). `full_name` ("owner/repo") and `url`
    # are what a forge's push payload is matched against.
    full_name: str = ""
    secret: str = ""  # webhook secret: HMAC key (GitHub, Gitea) or token (GitLab)
    build_tags: bool = False  # tag pushes are ignored unless this is set
    # Pull (merge) requests are built from the forge's ref of their head. One from a
    # fork waits until someone approves it (`POST /approvals/<id>/approve`) unless this
    # is set: its code is anyone's.
    build_forks: bool = False
    # A newer push to a branch, or to a pull request, cancels that branch's (or pull request's)
    # older builds still without a verdict (POST /builds/<id>/cancel, ordered like any request).
    auto_cancel: bool = True
    # Most builds of this repository one node runs at once (0: only build.max_concurrent bounds
    # them); the node's free slots go round the repositories with builds waiting, in turn.
    max_concurrent: int = 0
    status_api: str = ""  # e.g. https://api.github.com; commit statuses are posted there
    # The shape of that API: "github" (GitHub, and Gitea/Forgejo, which speak it too) or
    # "gitlab" (its /projects/:id/statuses/:sha, e.g. status_api https://gitlab.com/api/v4).
    status_style: str = "github"
    status_token: str = ""  # the forge's API token for commit statuses
    status_context: str = "pbft-ci"  # the name statuses are posted under
    # What a skipped build ([skip ci], when:) posts to GitHub and Gitea, the client's status and each
    # node's alike: `pending`, saying nothing was built, so that a required check stays expected
    # (the default); with this set, `success`, which passes a required check for a commit nothing
    # built. GitLab gets its own `skipped` state either way (docs/forges.md, "Skipped builds").
    skipped_passes: bool = False
    # Each node also posts its own result, as `<status_context>/node-<id>`, with a forge token
    # of its own (docs/forges.md, "Each node's own status"): then a client's word is not all the
    # forge hears. Needs status_api, full_name and node_status_token_file.
    node_statuses: bool = False
    # The file each node reads its own status token from, relative to this file; "{id}" is the
    # node's id. A node reads only its own, and refuses to start without it.
    node_status_token_file: str = ""
    # May this repository's builds reach the network (e.g. to install
    # dependencies)? Never this host or the peers (builder/engine/network.py). Off by
    # default: what a build fetches may differ between nodes.
    build_network: bool = False
    # The URLs this repository's submodules may be fetched from (builder/workspace/checkout.py), as its
    # .gitmodules gives them (relative ones resolved against `url`); a build whose commit
    # records a submodule from any other URL is an error. Each is kept as a mirror of its own.
    submodules: tuple[str, ...] = ()
    # Builds the client submits on a clock (client/schedules.py), each of its own branch, as
    # the event `cron`; a client that was down over a slot submits one build when it starts.
    schedules: tuple[ScheduleConfig, ...] = ()
    # Webhooks and e-mails the client sends once a build of this repository has its verdict
    # (see repositories[].notify[]); at most 16.
    notify: tuple[NotifyConfig, ...] = ()
    # Environment variables of this repository's builds whose values every node reads from a file
    # (docs/secrets.md): every node's operator can read them, and builds of the events each one
    # names get them, masked in the build logs.
    secrets: tuple[BuildSecretConfig, ...] = ()
    # Whether a secret may name the event pull_request. The nodes cannot tell a fork's pull request
    # from one of a branch of the repository, so every pull request's build counts as a fork's: one
    # that gets a secret lets whoever opened it read the secret.
    secrets_for_forks: bool = False

    def node_status_token_path(self, base: Path, node_id: int) -> Path:
        """Node `node_id`'s status token file, relative to `base` (the configuration's folder)."""
        return (base / per_node(self.node_status_token_file, node_id)).resolve()


@dataclass(frozen=True)
class BuildConfig:
    image: str = "pbft-ci/busybox:latest"  # for a spec that names none; pulled like any image (builder/engine/images.py)
    timeout_s: float = 300.0  # a build's deadline; a spec may ask for less; below protocol.client_deadline_s
    memory_mb: int = 256  # the build's processes' share of its memory limit (tmpfs come on top)
    cpus: float = 1.0  # CPUs a build may use
    pids_limit: int = 128  # processes and threads a build may have
    output_cap_bytes: int = 1_000_000  # build output kept in the log; the rest is cut
    user: str = "1000:1000"  # numeric uid:gid the build runs as
    max_concurrent: int = 2  # builds a node runs at once
    allow_root: bool = False  # may a repository's .pbft-ci.yml ask to build as root?
    tmp_mb: int = 64  # size of the build's /tmp and, separately, of its /dev/shm
    workspace_mb: int = 1024  # size of the tmpfs the build's /workspace lives on
    home_mb: int = 256  # size of the tmpfs the build's HOME (/home/build) lives on
    cache_mb: int = 512  # largest build cache (a tar) a node saves for a repository; 0: no caches
    cache_keep: int = 3  # caches a node keeps per scope (a branch, tag or pull request), the oldest deleted first
    # Scopes a node keeps caches of per repository, pull requests' apart from branches' and
    # tags': past this many, the least recently used scope of the same kind goes whole.
    cache_scopes: int = 4
    artifacts_mb: int = 64  # most bytes of artifacts one build may keep (builder/workspace/artifacts.py); 0: artifacts off
    artifacts_keep: int = 5  # builds per repository whose artifacts a node keeps, the oldest deleted first
    # Registries (host[:port], docker.io for Docker Hub) a node pulls images it lacks from;
    # none: builds use only what each engine holds.
    registries: tuple[str, ...] = ()
    # Each node's credentials for them, a Docker config.json; "{id}" is the node's id.
    registry_auth_file: str = ""
    require_digests: bool = False  # run only images named by digest (name@sha256:...)

    def registry_auth_path(self, base: Path, node_id: int) -> Path | None:
        """Node `node_id`'s credentials file, relative to `base` (the configuration's folder)."""
        if not self.registry_auth_file:
            return None
        return (base / per_node(self.registry_auth_file, node_id)).resolve()


# From this many nodes up a network relays votes unless its YAML says otherwise: in
# scripts/bench.py relay runs, relaying was faster from n = 7 or 10 up, and the extra hop
# made n = 4 slower (13.4 vs 10.8 ms p50 in one run, 11.4 vs 10.7 in others).
RELAY_VOTES_FROM_NODES = 7


# The replica's settings a network's YAML may choose (`protocol:`). pbft.slot.ReplicaSettings
# defines them, their meaning and their defaults, once; relay_votes, unset, follows the
# number of nodes (RELAY_VOTES_FROM_NODES, see load_config).
REPLICA_SETTINGS = ("checkpoint_interval", "log_window", "batch_max", "pipeline_depth", "max_buffered",
                    "view_change_timeout_s", "relay_votes", "relay_fallback_s")


def _replica_settings(self, *, node_id: int, n: int, f: int, builder_id: str = "") -> ReplicaSettings:
    """The settings node `node_id` of this network runs its replica with."""
    return ReplicaSettings(node_id=node_id, n=n, f=f, builder_id=builder_id,
                           **{name: getattr(self, name) for name in REPLICA_SETTINGS})


# The protocol section: those replica settings, and the client's own (how long it waits
# before it sends a request to every node, and before it gives up on a verdict).
ProtocolConfig = make_dataclass(
    "ProtocolConfig",
    [(f.name, f.type, field(default=f.default)) for f in fields(ReplicaSettings) if f.name in REPLICA_SETTINGS] + [
        ("client_retransmit_s", float, field(default=5.0, metadata={
            "doc": "how long the client waits for f+1 matching replies before it sends the request to every node"})),
        ("client_deadline_s", float, field(default=600.0, metadata={
            "doc": "how long the client waits for a verdict before it answers timeout, unless f+1 nodes say "
                   "the build waits for a build slot or runs (then it waits on, up to client_queue_limit_s)"})),
        ("client_queue_limit_s", float, field(default=3600.0, metadata={
            "doc": "the longest the client waits for a verdict of a build that f+1 nodes say waits or runs"})),
        ("client_settle_s", float, field(default=30.0, metadata={
            "doc": "once f+1 replies agree, how much longer the client waits for 2f+1 to agree (certified) "
                   "or for replies that make that impossible (disputed: the nodes disagree) before it "
                   "answers with the f+1"})),
    ],
    frozen=True,
    namespace={"replica_settings": _replica_settings},
)


@dataclass(frozen=True)
class NetworkConfig:
    path: Path
    f: int  # faults tolerated; n = len(nodes) must be at least 3f+1
    nodes: tuple[NodeConfig, ...]  # see nodes[]
    clients: tuple[ClientConfig, ...]  # see clients[]
    repositories: tuple[RepositoryConfig, ...]  # see repositories[]
    build: BuildConfig = field(default_factory=BuildConfig)  # see build
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)  # see protocol
    data_dir: Path = Path("data")  # stores, git mirrors, caches, artifacts: one folder per node and client
    log_dir: Path = Path("log")  # node, client and build logs
    keys_dir: Path = Path("keys")  # private keys, generated on first start, never committed
    allow_byzantine: bool = False  # may nodes start with --byzantine (fault demos and tests)?
    # The network owner's signed in-toto layout (scripts/owner.py layout): the client
    # puts it in each build's in-toto bundle. Only the client reads it.
    in_toto_layout: Path | None = None
    tls: NodeTLSConfig | None = None  # HTTPS and WSS on every node's port (see its section)

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def builder_id(self) -> str:
        """The network as a SLSA builder (`pbft.provenance.builder_id`): its nodes' keys and f."""
        return builder_id((node.public_key for node in self.nodes), self.f)

    def node_ssl(self) -> ssl.SSLContext | bool:
        """`ssl=` for a connector that reaches the nodes: the network's CA with `tls:`, else
        aiohttp's default (which plain http:// URLs never use)."""
        return self.tls.client_context() if self.tls is not None else True

    def node(self, node_id: int) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(f"no node {node_id} in {self.path}")

    def client(self, name: str) -> ClientConfig:
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"no client {name!r} in {self.path}")

    def repository(self, name: str) -> RepositoryConfig | None:
        return next((repo for repo in self.repositories if repo.name == name), None)

    def node_key_path(self, node_id: int) -> Path:
        return node_key_file(self.keys_dir, node_id)

    def client_key_path(self, name: str) -> Path:
        return client_key_file(self.keys_dir, name)

    def runner_key_path(self, name: str) -> Path:
        return runner_key_file(self.keys_dir, name)


def node_key_file(keys_dir: Path, node_id: int) -> Path:
    """Where a node's private key lives in a keys folder (its public half beside it, as .pub)."""
    return Path(keys_dir) / f"node-{node_id}.key"


def client_key_file(keys_dir: Path, name: str) -> Path:
    return Path(keys_dir) / f"client-{name}.key"


def runner_key_file(keys_dir: Path, name: str) -> Path:
    return Path(keys_dir) / f"runner-{name}.key"


def read_node_status_token(path: Path) -> str:
    """A node's forge token for its own statuses, from its file; ValueError names the file and
    what is wrong, never the file's content."""
    try:
        token = read_bounded(path, MAX_SECRET_FILE_BYTES).decode().strip()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not text") from None
    if not token:
        raise ValueError(f"{path} is empty")
    # It goes into an HTTP header, where a line break would start another one.
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{path} must hold one token of printable ASCII without spaces")
    return token


def is_client_name(name: str) -> bool:
    """A client name is also part of its key file's name, so it is checked before use."""
    return bool(_NAME.fullmatch(name))


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, base: Path, read_secrets: bool = True) -> None:
        self.base = base
        self.read_secrets = read_secrets
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def get(self, data: dict, key: str, where: str, check: Callable[[Any], Any], default: Any = ...):
        if key not in data or data[key] is None:
            if default is ...:
                self.fail(f"{where}{key}", "is required")
            return None if default is ... else default
        try:
            return check(data[key])
        except (TypeError, ValueError) as error:
            self.fail(f"{where}{key}", str(error))
            return None if default is ... else default

    def secret(self, entry: dict, where: str, key: str) -> str:
        """A secret inline (`key`) or, better kept out of the file, from `<key>_file`."""
        if f"{key}_file" not in entry:
            return self.get(entry, key, where, _typed(str), "")
        path = self.base / str(entry[f"{key}_file"])
        if not self.read_secrets:
            return ""
        try:
            return read_bounded(path, MAX_SECRET_FILE_BYTES).decode().strip()
        except OSError as error:
            self.fail(f"{where}{key}_file", f"cannot read {path}: {error.strerror}")
        except UnicodeDecodeError:
            self.fail(f"{where}{key}_file", f"{path} is not UTF-8 text")
        return ""

    def public_key(self, entry: dict, where: str, require: bool) -> str:
        if "public_key" in entry:
            text = self.get(entry, "public_key", where, _public_key_hex, "")
        elif "public_key_file" in entry:
            path = self.base / str(entry["public_key_file"])
            if not path.exists():
                if require:
                    self.fail(f"{where}public_key_file", f"{path} does not exist (run scripts/keygen.py)")
                return ""
            try:
                # Undecodable bytes become U+FFFD, which the check of the hex digits then names.
                found = read_bounded(path, MAX_SECRET_FILE_BYTES).decode(errors="replace").strip()
            except OSError as error:
                self.fail(f"{where}public_key_file", f"cannot read {path}: {error.strerror}")
                return ""
            text = self.get({"k": found}, "k", f"{where}public_key_file ", _public_key_hex, "")
        else:
            self.fail(f"{where}public_key", "is required (or public_key_file)")
            text = ""
        return text


def _typed(kind: type, minimum: float | None = None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"must be {kind.__name__}, not {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return check


def _more_than_zero(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        value = _typed(kind)(value)
        if not value > 0:
            raise ValueError("must be more than 0")
        return value

    return check


def _matching(pattern: re.Pattern, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"is not a valid {what}: {value!r}")
        return value

    return check


def _host(value: Any) -> str:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
    return _matching(_HOST, "host name or IP address")(value)


def _positive_float(value: Any) -> float:
    number = _typed(float)(value)
    if not number > 0:
        raise ValueError("must be greater than 0")
    return number


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost": only processes on this machine reach it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(value: Any) -> int:
    port = _typed(int, 1)(value)
    if port > 65535:
        raise ValueError("must be at most 65535")
    return port


def _public_key_hex(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be 64 hex digits")
    parse_public_key(value)
    return value.lower()


def _dataclass_section(
    reader: _Reader, data: Any, where: str, cls: type, checks: dict[str, Callable[[Any], Any]] | None = None
) -> Any:
    """A section read into `cls`: a number is at least 0 unless `checks` names a stricter rule."""
    checks = checks or {}
    if data is None:
        return cls()
    if not isinstance(data, dict):
        reader.fail(where, "must be a mapping")
        return cls()
    defaults = cls()
    values = {}
    for name, default in vars(defaults).items():
        kind = type(default)
        check = checks.get(name) or _typed(kind, 0 if kind in (int, float) else None)
        values[name] = reader.get(data, name, f"{where}.", check, default)
    for unknown in sorted(set(data) - set(values)):
        reader.fail(f"{where}.{unknown}", "unknown setting")
    return cls(**values)


# A build cannot run with none of these: zero memory, processes or room on a
# tmpfs fails every build in ways that look like the build's own fault, and
# zero concurrent builds would wait forever.
_BUILD_CHECKS = {
    **{
        name: _typed(int, 1)
        for name in ("memory_mb", "pids_limit", "workspace_mb", "tmp_mb", "home_mb", "max_concurrent", "cache_keep",
                     "cache_scopes", "artifacts_keep")
    },
    "timeout_s": _more_than_zero(float),
    "cpus": _more_than_zero(float),
    "registries": lambda value: _registries(value),
}
_REGISTRY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?")


def _registries(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(host, str) and _REGISTRY.fullmatch(host) for host in value):
        raise ValueError("must be a list of registry hosts, host[:port] (docker.io for Docker Hub)")
    return tuple(value)


def _check_build_fits_client_deadline(reader: _Reader, build: BuildConfig, protocol: ProtocolConfig) -> None:
    """The client waits client_deadline_s for f+1 replies; a build allowed to run
    as long or longer would time out at the client while its nodes still agree."""
    if build.timeout_s >= protocol.client_deadline_s:
        reader.fail(
            "build.timeout_s",
            f"{build.timeout_s:g} s must be less than protocol.client_deadline_s ({protocol.client_deadline_s:g} s): "
            "a build at its full timeout could not be answered before the client gives up",
        )


def _docker_host(value: Any) -> str:
    """unix:///absolute/path, tcp://host:port or ssh://[user@]host[:port]; nothing else, no options or paths."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in _DOCKER_SCHEMES:
        raise ValueError(f"must start with unix://, tcp:// or ssh://, not {value!r}")
    if scheme == "unix":
        if not rest.startswith("/") or re.search(r"[\s\x00]", rest):
            raise ValueError(f"unix:// needs an absolute socket path without spaces, e.g. unix:///run/docker.sock, "
                             f"not {value!r}")
        return value
    user, at, address = rest.rpartition("@")
    if at and scheme == "tcp":
        raise ValueError(f"tcp:// takes no user name: {value!r}")
    if at and not _SSH_USER.fullmatch(user):
        raise ValueError(f"is not a valid ssh user name: {user!r}")
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", address)
    if bracketed:
        if scheme == "ssh":
            # The SDK's ssh transport splits host and port at the first colon.
            raise ValueError(f"ssh:// takes a host name or an IPv4 address, not {value!r}")
        host, port = bracketed.groups()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"is not a valid IPv6 address: {host!r}") from None
    else:
        # A name or an IPv4 address: no colon, no slash, no leading dash.
        host, colon, port = address.partition(":")
        if not _HOST.fullmatch(host):
            raise ValueError(f"is not a valid {scheme}:// address (host name or IP address, then :port): {value!r}")
        port = port if colon else None
    if port is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
            raise ValueError(f"has an invalid port: {value!r}")
    elif scheme == "tcp":
        raise ValueError(f"tcp:// needs a port, e.g. tcp://build-1.example:2376, not {value!r}")
    return value


def _docker_tls(reader: _Reader, block: Any, where: str, kind: type = DockerTLSConfig) -> Any:
    """The `docker_tls` (or `tls`) mapping, its three files resolved against the configuration's folder."""
    if not isinstance(block, dict):
        reader.fail(where, "must be a mapping with ca_file, cert_file and key_file")
        return None
    paths = {}
    for key in _DOCKER_TLS_FILES:
        value = reader.get(block, key, f"{where}.", _non_empty_string)
        paths[key] = (reader.base / value).resolve() if value else None
    for unknown in sorted(set(block) - set(_DOCKER_TLS_FILES), key=str):
        reader.fail(f"{where}.{unknown}", "unknown setting")
    if None in paths.values():
        return None
    return kind(**paths)


def _non_empty_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _docker_engine(reader: _Reader, entry: dict, where: str) -> DockerEngineConfig | None:
    """`docker_host` and `docker_tls` of the build section or of a node's entry; None when it sets neither."""
    if entry.get("docker_host") is None and entry.get("docker_tls") is None:
        return None
    host = reader.get(entry, "docker_host", where, _docker_host, "")
    tls = None
    if entry.get("docker_tls") is not None:
        tls = _docker_tls(reader, entry["docker_tls"], f"{where}docker_tls")
        if entry.get("docker_host") is None:
            reader.fail(f"{where}docker_tls", "needs docker_host (a tcp:// engine) beside it")
        elif host and not host.startswith("tcp://"):
            reader.fail(f"{where}docker_tls", "is only for tcp:// engines: unix:// is guarded by the socket's "
                                              "file permissions, ssh:// by ssh's own keys")
    elif host.startswith("tcp://"):
        reader.fail(f"{where}docker_host",
                    "tcp:// needs docker_tls (ca_file, cert_file, key_file): a Docker API without TLS client "
                    "certificates lets anyone who reaches its port run containers as root on that machine")
    return DockerEngineConfig(host, tls)


def _check_docker_tls_files(reader: _Reader, engine: DockerEngineConfig, where: str) -> None:
    """The TLS files of the engine the node starting with this configuration will use must be readable."""
    if engine.tls is None:
        return
    for key in _DOCKER_TLS_FILES:
        path = getattr(engine.tls, key)
        try:
            read_bounded(path, MAX_CERTIFICATE_FILE_BYTES)
        except OSError as error:
            reader.fail(f"{where}docker_tls.{key}", f"cannot read {path}: {error.strerror}")


def _check_node_tls_files(reader: _Reader, tls: NodeTLSConfig, node_id: int | None) -> None:
    """The CA must load, for everyone; the node starting with this configuration must be able
    to serve with its certificate and key. Each file is read within its bound first: ssl opens
    the path itself, and would wait for ever on a FIFO put there."""
    problem = _unreadable(tls.ca_file)
    if problem is None:
        try:
            tls.client_context()
        except (OSError, ssl.SSLError) as error:
            problem = getattr(error, "strerror", None) or str(error)
    if problem is not None:
        reader.fail("tls.ca_file", f"cannot load {tls.ca_file}: {problem}")
    if node_id is None:
        return
    cert, key = tls.node_files(node_id)
    reasons = {path: _unreadable(path) for path in (cert, key)}
    problem = next((f"{path}: {reason}" for path, reason in reasons.items() if reason is not None), None)
    if problem is None:
        try:
            tls.server_context(node_id)
        except (OSError, ssl.SSLError) as error:
            problem = getattr(error, "strerror", None) or str(error)
    if problem is not None:
        reader.fail("tls", f"node {node_id} cannot serve with {cert} and {key}: {problem}")


def _unreadable(path: Path) -> str | None:
    """Why the certificate file at `path` cannot be read, or None when it can."""
    try:
        read_bounded(path, MAX_CERTIFICATE_FILE_BYTES)
    except OSError as error:
        return error.strerror
    return None


def _entries(reader: _Reader, data: dict, key: str) -> list[tuple[str, dict]]:
    items = data.get(key)
    if not isinstance(items, list) or not items:
        reader.fail(key, "must be a non-empty list")
        return []
    out = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            reader.fail(where, "must be a mapping")
        else:
            out.append((f"{where}.", item))
    return out


def _located(url: str, config_path: Path) -> str:
    """A repository's URL; a relative path is relative to the configuration file."""
    if url and "://" not in url and not url.startswith(("/", "git@")):
        return str((config_path.parent / url).resolve())
    return url


MAX_SUBMODULE_URLS = 64


def _submodule_urls(reader: _Reader, entry: dict, where: str, config_path: Path) -> tuple[str, ...]:
    items = entry.get("submodules")
    if items is None:
        return ()
    if not isinstance(items, list) or len(items) > MAX_SUBMODULE_URLS:
        reader.fail(f"{where}submodules", f"must be a list of at most {MAX_SUBMODULE_URLS} URLs")
        return ()
    urls = []
    for index, item in enumerate(items):
        at = f"{where}submodules[{index}]"
        if isinstance(item, str) and _URL.fullmatch(item):
            urls.append(_located(item, config_path))
        else:
            reader.fail(at, "must be a repository URL or path")
    return tuple(urls)


def _mappings(reader: _Reader, entry: dict, where: str, key: str, most: int, many: str,
              one: str) -> list[tuple[str, dict]]:
    """The optional list `key` of an `entry` (a repository's, a client's), each mapping with the
    path to it (`repositories[0].schedules[1]`): at most `most` of them (`many` says what they are in the
    refusal), each one a mapping (`one` says of what)."""
    items = entry.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > most:
        reader.fail(f"{where}{key}", f"must be a list of at most {most} {many}")
        return []
    found = []
    for index, item in enumerate(items):
        at = f"{where}{key}[{index}]"
        if isinstance(item, dict):
            found.append((at, item))
        else:
            reader.fail(at, f"must be a mapping {one}")
    return found


def _schedules(reader: _Reader, entry: dict, where: str) -> tuple[ScheduleConfig, ...]:
    schedules = []
    for at, item in _mappings(reader, entry, where, "schedules", MAX_SCHEDULES, "schedules", "of name, cron and branch"):
        for key in item.keys() - {"name", "cron", "branch"}:
            reader.fail(f"{at}.{key}", "is not a schedule's setting (name, cron, branch)")
        schedules.append(ScheduleConfig(
            name=reader.get(item, "name", f"{at}.", _matching(_NAME, "schedule name")),
            cron=reader.get(item, "cron", f"{at}.", _cron),
            branch=reader.get(item, "branch", f"{at}.", _branch),
        ))
    if len({schedule.name for schedule in schedules}) != len(schedules):
        reader.fail(f"{where}schedules", "names must be unique")
    return tuple(schedules)


def _notify(reader: _Reader, entry: dict, where: str) -> tuple[NotifyConfig, ...]:
    targets = []
    for at, item in _mappings(reader, entry, where, "notify", MAX_NOTIFY_TARGETS, "webhooks or e-mail targets",
                              "with webhook (and secret_file) or email"):
        # YAML 1.1, which PyYAML reads, takes a bare `on` for the boolean true, so `on: [failure]`
        # arrives keyed True. Read it back as the `on` the operator wrote.
        if True in item:
            item = {("on" if key is True else key): value for key, value in item.items()}
        target = _notify_target(reader, item, at)
        if target is not None:
            targets.append(target)
    return tuple(targets)


def _notify_target(reader: _Reader, item: dict, at: str) -> NotifyConfig | None:
    for unknown in sorted(set(item) - _NOTIFY_KEYS, key=str):
        reader.fail(f"{at}.{unknown}", "is not a notification's setting (webhook, secret_file, email, on, branches)")
    has_webhook, has_email = item.get("webhook") is not None, item.get("email") is not None
    if has_webhook == has_email:
        reader.fail(at, "has both webhook and email: make them two entries" if has_webhook
                    else "needs webhook (with secret_file) or email")
        return None
    has_secret = "secret" in item or "secret_file" in item
    problems = len(reader.problems)
    secret = reader.secret(item, f"{at}.", "secret")
    unreadable = len(reader.problems) > problems
    secret_key = f"{at}.secret_file" if "secret_file" in item else f"{at}.secret"
    webhook, email = "", ()
    if has_webhook:
        webhook = reader.get(item, "webhook", f"{at}.", _matching(_HTTP_URL, "http(s) URL"), "")
        if not has_secret:
            reader.fail(f"{at}.secret_file", "is required for a webhook: its receiver checks the signature with it")
        elif secret and len(secret) < MIN_TOKEN_CHARS:
            reader.fail(secret_key, f"must be at least {MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32)")
        elif not secret and not unreadable and (reader.read_secrets or "secret" in item):
            # Left unread (a node's view of the file) is not empty.
            reader.fail(secret_key, "is empty")
    else:
        if has_secret:
            reader.fail(secret_key, "is only for a webhook: an e-mail is not signed")
        email = reader.get(item, "email", f"{at}.", _email_addresses, ())
    return NotifyConfig(
        webhook=webhook,
        secret=secret if has_webhook else "",
        email=email,
        on=reader.get(item, "on", f"{at}.", _notify_statuses, NOTIFY_STATUSES),
        branches=reader.get(item, "branches", f"{at}.", _branches, ()),
    )


def _email_addresses(value: Any) -> tuple[str, ...]:
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list) or not addresses or len(addresses) > MAX_EMAIL_RECIPIENTS:
        raise ValueError(f"must be an e-mail address or a list of 1 to {MAX_EMAIL_RECIPIENTS}")
    for address in addresses:
        if not isinstance(address, str) or len(address) > 254 or not _EMAIL.fullmatch(address):
            raise ValueError(f"is not a plain e-mail address (name@example.org): {str(address)[:80]!r}")
    return tuple(addresses)


def _email_address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be one e-mail address (name@example.org)")
    return _email_addresses(value)[0]


def _notify_statuses(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of verdicts among {', '.join(NOTIFY_STATUSES)}")
    for status in value:
        if status not in NOTIFY_STATUSES:
            raise ValueError(f"{str(status)[:40]!r} is not a verdict; choose among {', '.join(NOTIFY_STATUSES)}")
    return tuple(dict.fromkeys(value))


def _branches(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of branch names")
    for branch in value:
        try:
            check_branch_name(branch)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{str(branch)[:80]!r}: {error}") from None
    return tuple(value)


def _smtp(reader: _Reader, block: Any, where: str) -> SMTPConfig | None:
    if block is None:
        return None
    if not isinstance(block, dict):
        reader.fail(where, "must be a mapping with host, from and optionally port, starttls, user, password_file")
        return None
    for unknown in sorted(set(block) - _SMTP_KEYS, key=str):
        reader.fail(f"{where}.{unknown}", "unknown setting")
    at = f"{where}."
    host = reader.get(block, "host", at, _host)
    starttls = reader.get(block, "starttls", at, _typed(bool), False)
    user = reader.get(block, "user", at, _matching(_TOKEN, "user name (printable ASCII, no spaces)"), "")
    has_password = "password" in block or "password_file" in block
    password = reader.secret(block, at, "password")
    if bool(user) != has_password:
        reader.fail(f"{at}user" if has_password else f"{at}password_file",
                    "user and password_file go together: a login needs both")
    if user and not starttls and host and not is_loopback_host(host):
        reader.fail(f"{at}starttls", f"must be true to log in to {host}: without it the password crosses the "
                                     "network in the clear")
    ca_file = reader.get(block, "ca_file", at, _non_empty_string, "")
    if ca_file and not starttls:
        reader.fail(f"{at}ca_file", "is only for starttls")
    return SMTPConfig(
        host=host or "",
        from_address=reader.get(block, "from", at, _email_address) or "",
        port=reader.get(block, "port", at, _port, SMTPConfig.port),
        starttls=starttls,
        ca_file=(reader.base / ca_file).resolve() if ca_file else None,
        user=user,
        password=password,
        timeout_s=reader.get(block, "timeout_s", at, _positive_float, SMTPConfig.timeout_s),
    )


def _check_mail_can_be_sent(reader: _Reader, clients: list[ClientConfig], repositories: list[tuple[str, dict]],
                            targets: list[tuple[NotifyConfig, ...]]) -> None:
    """An e-mail target needs a mail server in every client's entry: any client may submit the build."""
    without = [f"clients[{index}] ({client.name!r})" for index, client in enumerate(clients) if client.smtp is None]
    if not without:
        return
    for (where, _), notify in zip(repositories, targets):
        for index, target in enumerate(notify):
            if target.email:
                reader.fail(f"{where}notify[{index}].email",
                            f"needs an smtp section (host, from) in {', '.join(without)} to send it through")


def _build_secrets(reader: _Reader, entry: dict, where: str, read_files: bool) -> tuple[BuildSecretConfig, ...]:
    """A repository's `secrets:`, each file read and checked when `read_files` (a node starts)."""
    for_forks = entry.get("secrets_for_forks") is True
    secrets = []
    for at, item in _mappings(reader, entry, where, "secrets", MAX_SECRETS, "secrets (name, file, events)",
                              "of name, file and events"):
        for key in sorted(item.keys() - {"name", "file", "events"}, key=str):
            reader.fail(f"{at}.{key}", "is not a secret's setting (name, file, events)")
        name = reader.get(item, "name", f"{at}.", _secret_name)
        file = reader.get(item, "file", f"{at}.", _non_empty_string)
        events = reader.get(item, "events", f"{at}.", _secret_events, DEFAULT_SECRET_EVENTS)
        if "pull_request" in events and not for_forks:
            reader.fail(f"{at}.events", "names pull_request, whose builds run code that anyone with a fork may "
                                        "write: the repository must also set secrets_for_forks: true")
        if name is None or file is None:
            continue
        path = (reader.base / file).resolve()
        if read_files:
            try:
                read_build_secret(path)
            except ValueError as error:
                reader.fail(f"{at}.file", str(error))
        secrets.append(BuildSecretConfig(name, path, events))
    names = [secret.name for secret in secrets]
    for name in sorted({name for name in names if names.count(name) > 1}):
        reader.fail(f"{where}secrets", f"name {name} is used by more than one secret")
    return tuple(secrets)


def _secret_name(value: Any) -> str:
    if not isinstance(value, str) or not SECRET_NAME.fullmatch(value):
        raise ValueError(f"is not an environment variable name (capitals, digits and _, not starting with a digit, "
                         f"at most 64): {str(value)[:80]!r}")
    if _RESERVED_SECRET_NAME.fullmatch(value):
        raise ValueError(f"{value} is the node's to set (CI, CI_*, PBFT_CI*, HOME, USER, LOGNAME, PATH, SHELL, "
                         "SOURCE_DATE_EPOCH, TZ, LC_ALL, LANG)")
    return value


def _secret_events(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(event, str) for event in value):
        raise ValueError(f"must be a non-empty list of events ({', '.join(EVENTS)})")
    unknown = [event for event in value if event not in EVENTS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an event ({', '.join(EVENTS)})")
    if len(set(value)) != len(value):
        raise ValueError("names an event twice")
    return tuple(value)


def _cron(value: Any) -> str:
    # Five fields or an @-alias: croniter also reads a sixth field of seconds and a seventh of
    # years, which would let one schedule fire every second.
    if not isinstance(value, str) or not (
        (value.startswith("@") or len(value.split()) == 5) and croniter.is_valid(value)
    ):
        raise ValueError(f"is not a cron expression of five fields or an @-alias: {str(value)[:80]!r}")
    return value


def _branch(value: Any) -> str:
    check_branch_name(value)
    return value


def _client(reader: _Reader, where: str, item: dict, require_keys: bool) -> ClientConfig:
    host = reader.get(item, "host", where, _host, "")
    token = reader.secret(item, where, "token")
    token_key = f"{where}token_file" if "token_file" in item else f"{where}token"
    if token and len(token) < MIN_TOKEN_CHARS:
        reader.fail(token_key, f"must be at least {MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32)")
    elif token and not _TOKEN.fullmatch(token):
        reader.fail(token_key, "must be printable ASCII without spaces")
    plain_without_token = reader.get(item, "plain_without_token", where, _typed(bool), False)
    if plain_without_token and host and not is_loopback_host(host):
        reader.fail(f"{where}plain_without_token",
                    f"only allowed when host is a loopback address (127.0.0.0/8, ::1, localhost), not {host}; "
                    "set token_file instead")
    for unknown in sorted(set(item) - _CLIENT_KEYS, key=str):
        reader.fail(f"{where}{unknown}", "unknown setting")
    return ClientConfig(
        name=reader.get(item, "name", where, _matching(_NAME, "client name"), ""),
        host=host,
        port=reader.get(item, "port", where, _port, 0),
        public_key=reader.public_key(item, where, require_keys),
        max_body_bytes=reader.get(item, "max_body_bytes", where, _typed(int, 1), ClientConfig.max_body_bytes),
        public_url=reader.get(item, "public_url", where, _matching(_HTTP_URL, "http(s) URL"), ""),
        token=token,
        plain_without_token=plain_without_token,
        public_badges=reader.get(item, "public_badges", where, _typed(bool), False),
        body_timeout_s=reader.get(item, "body_timeout_s", where, _positive_float, ClientConfig.body_timeout_s),
        **{key: reader.get(item, key, where, _typed(int, 1), getattr(ClientConfig, key))
           for key in ("max_follows", "max_follows_per_caller", "max_downloads", "max_downloads_per_caller")},
        smtp=_smtp(reader, item.get("smtp"), f"{where}smtp"),
        runners=_runners(reader, item, where, require_keys),
    )


def _runners(reader: _Reader, item: dict, where: str, require_keys: bool) -> tuple[RunnerKeyConfig, ...]:
    runners = []
    for at, entry in _mappings(reader, item, where, "runners", MAX_RUNNERS, "action runners",
                               "of name and public_key (or public_key_file)"):
        for unknown in sorted(set(entry) - {"name", "public_key", "public_key_file"}, key=str):
            reader.fail(f"{at}.{unknown}", "is not a runner's setting (name, public_key or public_key_file)")
        runners.append(RunnerKeyConfig(
            name=reader.get(entry, "name", f"{at}.", _matching(_NAME, "runner name"), ""),
            public_key=reader.public_key(entry, f"{at}.", require_keys),
        ))
    names = [runner.name for runner in runners]
    for name in sorted({name for name in names if names.count(name) > 1}):
        reader.fail(f"{where}runners", f"name {name!r} is used by more than one runner")
    return tuple(runners)


def _check_node_statuses(reader: _Reader, repository: RepositoryConfig, where: str, node_id: int | None) -> None:
    """`node_statuses` needs where to post and a token file; the node starting with this
    configuration must be able to read its own token, or it would post nothing it was asked to."""
    if not repository.node_statuses:
        if repository.node_status_token_file:
            reader.fail(f"{where}node_status_token_file", "is read only with node_statuses: true")
        return
    missing = [key for key in ("status_api", "full_name") if not getattr(repository, key)]
    if missing:
        reader.fail(f"{where}node_statuses", f"needs {' and '.join(missing)}: each node posts its own status "
                                             "to the forge's statuses API for the repository's full_name")
    if not repository.node_status_token_file:
        reader.fail(f"{where}node_status_token_file",
                    "is required with node_statuses: each node posts with a forge token of its own "
                    "(e.g. keys/node-{id}.status-token, where {id} is the node's id)")
    elif node_id is not None:
        try:
            read_node_status_token(repository.node_status_token_path(reader.base, node_id))
        except ValueError as error:
            reader.fail(f"{where}node_status_token_file", f"node {node_id}: {error}")


def _check_distinct(reader: _Reader, nodes: list[NodeConfig], clients: list[ClientConfig]) -> None:
    """Each node and client needs a name, an address and a key of its own.

    Two entries sharing a key could sign for each other, so one stolen key
    would make two faulty principals; and a public key pasted into the wrong
    entry during a key ceremony shows up here instead of as a silent node.
    """
    client_names = [client.name for client in clients]
    for name in sorted({name for name in client_names if client_names.count(name) > 1}):
        reader.fail("clients", f"name {name!r} is used by more than one client")
    principals = [("nodes", f"node {node.id}", node) for node in nodes]
    principals += [("clients", f"client {client.name!r}", client) for client in clients]
    by_address: dict[tuple[str, int], str] = {}
    by_key: dict[str, str] = {}
    for section, label, entry in principals:
        address = (entry.host, entry.port)
        if address in by_address:
            reader.fail(section, f"{label} listens on {entry.host}:{entry.port}, as {by_address[address]} does")
        by_address.setdefault(address, label)
        if entry.public_key in by_key:  # "" (a key not generated yet) is never stored
            reader.fail(section, f"{label} has the same public key as {by_key[entry.public_key]} "
                                 f"({entry.public_key[:16]}…): every node and client needs a key of its own")
        elif entry.public_key:
            by_key[entry.public_key] = label
    # A runner only signs reports of actions, but a key it shared with a node or a client would
    # let one stolen key speak as both. Two clients may list the same runner: one name, one key.
    runner_keys: dict[str, str] = {}
    for client in clients:
        for runner in client.runners:
            label = f"runner {runner.name!r}"
            if runner_keys.setdefault(runner.name, runner.public_key) != runner.public_key:
                reader.fail("clients", f"{label} is listed with two different public keys")
            elif runner.public_key and by_key.setdefault(runner.public_key, label) != label:
                reader.fail("clients", f"{label} has the same public key as {by_key[runner.public_key]} "
                                       f"({runner.public_key[:16]}…): every runner needs a key of its own")


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML syntax error in one line, at its line and column of the file (PyYAML's own
    message spans several lines and names the text it read, not the file)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"not valid YAML: {' '.join(str(error).split())}"
    mark = error.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context = ""
    if error.context:
        context = f" ({error.context}"
        if error.context_mark is not None:
            context += f" at line {error.context_mark.line + 1}, column {error.context_mark.column + 1}"
        context += ")"
    return f"{where}: not valid YAML: {error.problem}{context}"


def load_config(
    path: str | Path, *, require_keys: bool = True, node_id: int | None = None, read_secrets: bool = True
) -> NetworkConfig:
    """Read and validate a network configuration; raise ConfigError listing every problem.

    `node_id` is the node about to run with it: the TLS files of that node's
    build engine must then be readable. Nobody else's are checked, since
    each node's machine holds only its own (and the client none); so is
    that node's own status token file, for a repository with `node_statuses`.
    `read_secrets=False` leaves the secrets kept in files (a client's token,
    forges' webhook secrets and status tokens, notification webhooks' HMAC keys
    and the SMTP password) unread and empty: only the
    client uses them, so with one node per host they stay on the client's
    host and a node's host needs none of them. Build secrets are the other
    way round: only nodes use them, so their files are read and checked when
    `node_id` is given, and never otherwise (the client's host needs none).
    """
    path = Path(path).resolve()
    try:
        # Bytes: PyYAML finds their encoding (UTF-8, or UTF-16 with its byte order mark) itself.
        data = yaml.safe_load(read_bounded(path, MAX_CONFIG_BYTES))
    except OSError as error:
        raise ConfigError(path, [f"cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError(path, [_yaml_problem(error)]) from None
    except RecursionError:
        # PyYAML composes nested collections recursively: `[[[[...` a few thousand deep ends it.
        raise ConfigError(path, ["not a configuration: nested too deeply"]) from None
    except (ValueError, TypeError, AttributeError) as error:
        # What some of PyYAML's constructors let escape for a malformed value: `2001-13-45`
        # (ValueError: month must be in 1..12), `!!int x`, `!!timestamp x` (AttributeError).
        raise ConfigError(path, [f"not valid YAML: {' '.join(str(error).split())}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a mapping"])
    reader = _Reader(path.parent, read_secrets)

    f = reader.get(data, "f", "", _typed(int, 0), 0)
    build_data = data.get("build")
    # The engine is where a node builds, not how: it may differ per node (a
    # node's own entry wins), unlike every other build setting.
    default_engine = DockerEngineConfig()
    if isinstance(build_data, dict):
        default_engine = _docker_engine(reader, build_data, "build.") or default_engine
        build_data = {key: value for key, value in build_data.items() if key not in _DOCKER_KEYS}
    tls = None
    if data.get("tls") is not None:
        tls = _docker_tls(reader, data["tls"], "tls", NodeTLSConfig)
    nodes = []
    for where, item in _entries(reader, data, "nodes"):
        own_engine = _docker_engine(reader, item, where)
        node = NodeConfig(
            id=reader.get(item, "id", where, _typed(int, 0), -1),
            host=reader.get(item, "host", where, _host, ""),
            port=reader.get(item, "port", where, _port, 0),
            public_key=reader.public_key(item, where, require_keys),
            docker=own_engine or default_engine,
            scheme="https" if tls is not None else "http",
        )
        nodes.append(node)
        if node_id is not None and node.id == node_id:
            _check_docker_tls_files(reader, node.docker, where if own_engine else "build.")
    ids = sorted(node.id for node in nodes)
    if nodes and ids != list(range(len(nodes))):
        reader.fail("nodes", f"ids must be 0..{len(nodes) - 1}, each once; got {ids}")
    if nodes and len(nodes) < 3 * f + 1:
        reader.fail("f", f"n = {len(nodes)} nodes tolerate at most f = {(len(nodes) - 1) // 3}; need n >= 3f+1")
    clients = []
    for where, item in _entries(reader, data, "clients"):
        clients.append(_client(reader, where, item, require_keys))
    repositories = []
    repository_entries = _entries(reader, data, "repositories")
    for where, item in repository_entries:
        # A misspelt setting would otherwise be read as its default, silently (at a reload too).
        for unknown in sorted(set(item) - _REPOSITORY_KEYS, key=str):
            reader.fail(f"{where}{unknown}", "unknown setting")
        url = _located(reader.get(item, "url", where, _matching(_URL, "repository URL or path"), ""), path)
        repositories.append(RepositoryConfig(
            name=reader.get(item, "name", where, _matching(_NAME, "repository name"), ""),
            url=url,
            full_name=reader.get(item, "full_name", where, _matching(_FULL_NAME, "owner/repository name"), ""),
            secret=reader.secret(item, where, "secret"),
            build_tags=reader.get(item, "build_tags", where, _typed(bool), False),
            build_forks=reader.get(item, "build_forks", where, _typed(bool), False),
            auto_cancel=reader.get(item, "auto_cancel", where, _typed(bool), True),
            max_concurrent=reader.get(item, "max_concurrent", where, _typed(int, 0), 0),
            status_api=reader.get(item, "status_api", where, _matching(_HTTP_URL, "http(s) URL"), ""),
            status_style=reader.get(item, "status_style", where, _matching(_STATUS_STYLE, "status style"), "github"),
            status_token=reader.secret(item, where, "status_token"),
            status_context=reader.get(item, "status_context", where, _matching(_NAME, "status context"), "pbft-ci"),
            skipped_passes=reader.get(item, "skipped_passes", where, _typed(bool), False),
            node_statuses=reader.get(item, "node_statuses", where, _typed(bool), False),
            node_status_token_file=reader.get(item, "node_status_token_file", where, _non_empty_string, ""),
            build_network=reader.get(item, "build_network", where, _typed(bool), False),
            submodules=_submodule_urls(reader, item, where, path),
            schedules=_schedules(reader, item, where),
            notify=_notify(reader, item, where),
            secrets=_build_secrets(reader, item, where, read_files=node_id is not None),
            secrets_for_forks=reader.get(item, "secrets_for_forks", where, _typed(bool), False),
        ))
        _check_node_statuses(reader, repositories[-1], where, node_id)
    _check_distinct(reader, nodes, clients)
    _check_mail_can_be_sent(reader, clients, repository_entries, [repo.notify for repo in repositories])
    if len({repo.name for repo in repositories}) != len(repositories):
        reader.fail("repositories", "entries must be unique")

    def directory(key: str, default: str) -> Path:
        value = reader.get(data, key, "", _typed(str), default)
        return (path.parent / value).resolve()

    build = _dataclass_section(reader, build_data, "build", BuildConfig, _BUILD_CHECKS)
    if not re.fullmatch(r"[0-9]+:[0-9]+", build.user):
        reader.fail("build.user", "must be a numeric uid:gid, e.g. 1000:1000")
    protocol = _dataclass_section(
        reader, data.get("protocol"), "protocol", ProtocolConfig,
        {"relay_fallback_s": _more_than_zero(float), "client_settle_s": _typed(float, minimum=0)},
    )
    given = data.get("protocol")
    if not (isinstance(given, dict) and "relay_votes" in given):
        protocol = replace(protocol, relay_votes=len(nodes) >= RELAY_VOTES_FROM_NODES)
    _check_build_fits_client_deadline(reader, build, protocol)
    layout = reader.get(data, "in_toto_layout", "", _typed(str), "")
    config = NetworkConfig(
        path=path,
        f=f,
        nodes=tuple(sorted(nodes, key=lambda node: node.id)),
        clients=tuple(clients),
        repositories=tuple(repositories),
        build=build,
        protocol=protocol,
        data_dir=directory("data_dir", "data"),
        log_dir=directory("log_dir", "log"),
        keys_dir=directory("keys_dir", "keys"),
        allow_byzantine=reader.get(data, "allow_byzantine", "", _typed(bool), False),
        in_toto_layout=(path.parent / layout).resolve() if layout else None,
        tls=tls,
    )
    if tls is not None:
        _check_node_tls_files(reader, tls, node_id)
    known = {"f", "nodes", "clients", "repositories", "build", "protocol",
             "data_dir", "log_dir", "keys_dir", "allow_byzantine", "in_toto_layout", "tls"}
    for unknown in sorted(set(data) - known):
        reader.fail(str(unknown), "unknown setting")
    if reader.problems:
        raise ConfigError(path, reader.problems)
    return config
