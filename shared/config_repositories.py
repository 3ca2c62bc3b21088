"""What a network builds: its repositories, each with its forge settings, its schedules, the
notifications of its verdicts and the secrets its builds get."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pbft.build import EVENTS
from pbft.builders import BUILDERS
from shared.config_files import SecretFile, per_node
from shared.config_values import (
    BRANCH, CRON, EMAIL, FILE_NAME, FULL_NAME, HTTP_URL, SECRET, SECRET_NAME_KIND, STATUS_STYLE, WEBHOOK_SECRET,
    RepositoryURL, name_of,
)
from shared.schema import Bool, Choice, FilePath, Int, ListOf, Section, section, setting

# What a notification may be sent for (client/notifications.py): an accepted result's status, or one
# of the verdicts without an agreed result. `timeout` is a build that ran out of its own time
# (f+1 nodes agree on that); `no_quorum` is no f+1 nodes agreeing before the client's deadline.
# A `matrix` result is not among them: each of its combinations' builds has a verdict of its own.
NOTIFY_STATUSES = ("success", "failure", "error", "timeout", "skipped", "cancelled", "divergent", "disputed",
                   "no_quorum")
MAX_NOTIFY_TARGETS = 16
MAX_EMAIL_RECIPIENTS = 16
# A schedule fires at most once a minute; more of them per repository would be a flood, not a plan.
MAX_SCHEDULES = 16
MAX_SUBMODULE_URLS = 64
# The events whose builds get a secret unless it names others: not pull_request, whose code
# anyone with a fork may write.
DEFAULT_SECRET_EVENTS = ("push", "tag", "cron", "manual")
MAX_SECRETS = 32


@section
class ScheduleConfig:
    """A build the client submits on a clock (client/schedules.py), as the event `cron`."""

    name: str = setting(name_of("schedule name"),
                        doc="names the schedule in the client's log and records; unique within its repository")
    cron: str = setting(CRON, doc="when, in UTC: five fields (minute hour day month weekday) or @hourly, @daily, ...")
    branch: str = setting(BRANCH, doc="what each run builds: the branch's head when the schedule fires")


def _notify_problems(target: NotifyConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    """A target is a webhook, signed with its secret, or e-mail addresses, which are not signed."""
    has_webhook, has_email = "webhook" in given, "email" in given
    if has_webhook and has_email:
        yield "", "has both webhook and email: make them two entries"
    elif not has_webhook and not has_email:
        yield "", "needs webhook (with secret_file) or email"
    elif has_webhook and "secret" not in given:
        yield "secret_file", "is required for a webhook: its receiver checks the signature with it"
    elif has_email and "secret" in given:
        yield "secret", "is only for a webhook: an e-mail is not signed"


@section(check=_notify_problems)
class NotifyConfig:
    """A place the client tells of a repository's verdicts (client/notifications.py): a webhook or e-mail addresses."""

    webhook: str = setting(HTTP_URL, default="", doc="an http(s) URL the verdict is POSTed to as JSON, signed with "
                                                     "secret")
    secret: str = setting(WEBHOOK_SECRET, default="", file=SecretFile(), local=True,
                          doc="the webhook's HMAC-SHA256 key, which its receiver checks X-PBFT-CI-Signature-256 with")
    email: tuple[str, ...] = setting(
        ListOf(EMAIL, min_items=1, max_items=MAX_EMAIL_RECIPIENTS, single=True), default=(),
        doc="addresses the verdict is mailed to, through the client's smtp",
    )
    on: tuple[str, ...] = setting(ListOf(Choice(NOTIFY_STATUSES, what="a verdict"), min_items=1),
                                  default=NOTIFY_STATUSES, doc="the verdicts told of; no_quorum: no f+1 nodes agreed "
                                                               "before the client's deadline")
    branches: tuple[str, ...] = setting(ListOf(BRANCH, min_items=1), default=(),
                                        doc="only builds of these branches (a pull request's: its target); none: all")


@section
class BuildSecretConfig:
    """An environment variable of the repository's builds whose value every node reads from a file (docs/secrets.md)."""

    name: str = setting(SECRET_NAME_KIND, doc="the variable the build gets: capitals, digits and _, not CI, CI_*, "
                                              "PBFT_CI_*, HOME, ...")
    # Read at each build's start, so replacing the file rotates it without a restart; nodes
    # check it when they start too. One trailing line break is not part of the value.
    file: Path = setting(FilePath(), local=True, doc="where every node reads the value: 8 to 8192 characters")
    events: tuple[str, ...] = setting(
        ListOf(Choice(EVENTS, what="an event"), min_items=1, unique=True), default=DEFAULT_SECRET_EVENTS,
        doc="the events whose builds get it; pull_request only with the repository's secrets_for_forks",
    )


def _repository_problems(repository: RepositoryConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    """Each node's own status needs where to post and a token file of the node's own."""
    if not repository.node_statuses:
        if "node_status_token_file" in given:
            yield "node_status_token_file", "is read only with node_statuses: true"
        return
    missing = [key for key in ("status_api", "full_name") if not getattr(repository, key)]
    if missing:
        yield "node_statuses", (f"needs {' and '.join(missing)}: each node posts its own status to the forge's "
                                "statuses API for the repository's full_name")
    if not repository.node_status_token_file:
        yield "node_status_token_file", ("is required with node_statuses: each node posts with a forge token of its "
                                         "own (e.g. keys/node-{id}.status-token, where {id} is the node's id)")


@section(check=_repository_problems)
class RepositoryConfig:
    """A repository the network may build; a webhook names it, never a URL."""

    name: str = setting(name_of("repository name"), doc="what a webhook names")
    url: str = setting(RepositoryURL(), doc="what nodes fetch: a URL, or a path relative to the file")
    full_name: str = setting(FULL_NAME, default="",
                             doc="owner/repository at the forge, which its deliveries are matched against")
    secret: str = setting(SECRET, default="", file=SecretFile(), local=True,
                          doc="the forge's webhook secret: HMAC key (GitHub, Gitea) or token (GitLab)")
    build_tags: bool = setting(Bool(), default=False, doc="build tag pushes, which are ignored otherwise")
    build_forks: bool = setting(Bool(), default=False, doc="build a fork's pull request without an approval "
                                                           "(POST /approvals/<id>/approve): its code is anyone's")
    auto_cancel: bool = setting(Bool(), default=True, doc="a newer push to a branch or pull request cancels its "
                                                          "older builds still without a verdict")
    max_concurrent: int = setting(Int(minimum=0), default=0, doc="most builds of this repository a node runs at "
                                                                 "once; 0: only build.max_concurrent")
    status_api: str = setting(HTTP_URL, default="", doc="the forge's API commit statuses are posted to, e.g. "
                                                        "https://api.github.com")
    status_style: str = setting(STATUS_STYLE, default="github",
                                doc="that API's shape: github (also Gitea, Forgejo) or gitlab")
    status_token: str = setting(SECRET, default="", file=SecretFile(), local=True,
                                doc="the forge's API token for commit statuses")
    status_context: str = setting(name_of("status context"), default="pbft-ci",
                                  doc="the name statuses are posted under")
    skipped_passes: bool = setting(Bool(), default=False, doc="a skipped build posts success to GitHub and Gitea, "
                                                              "not pending (docs/forges.md)")
    node_statuses: bool = setting(Bool(), default=False, doc="each node also posts its own result as "
                                                             "<status_context>/node-<id> (docs/forges.md)")
    node_status_token_file: str = setting(FILE_NAME, default="", local=True, doc="each node's own forge token, relative to "
                                                                     "this file; {id} is the node's id")
    vary: bool = setting(Bool(), default=False, doc="each node builds under its own variation of time zone, locale, "
                                                    "umask, clock, host name and build path, known to every node "
                                                    "(docs/reproducibility.md)")
    build_network: bool = setting(Bool(), default=False, doc="builds may reach the network, never this host or the "
                                                             "peers; what they fetch may differ between nodes")
    builders: str = setting(Choice(BUILDERS, what="a choice of builders"), default="all",
                            doc="`all`: every node builds each request; `f+1`: f+1 nodes the order picks, the "
                                "others only when those disagree, one is late or the build keeps artifacts")
    submodules: tuple[str, ...] = setting(
        ListOf(RepositoryURL(), max_items=MAX_SUBMODULE_URLS), default=(),
        doc="the URLs its submodules may be fetched from, as .gitmodules gives them; any other is an error",
    )
    schedules: tuple[ScheduleConfig, ...] = setting(
        ListOf(Section(ScheduleConfig), max_items=MAX_SCHEDULES, unique="name"), default=(),
        doc="builds the client submits on a clock; one missed while it was down is submitted when it starts",
    )
    notify: tuple[NotifyConfig, ...] = setting(
        ListOf(Section(NotifyConfig), max_items=MAX_NOTIFY_TARGETS), default=(),
        doc="webhooks and e-mails the client sends once a build has its verdict",
    )
    secrets: tuple[BuildSecretConfig, ...] = setting(
        ListOf(Section(BuildSecretConfig), max_items=MAX_SECRETS, unique="name"), default=(),
        doc="environment variables of its builds whose values every node reads from a file, masked in the logs",
    )
    # The nodes cannot tell a fork's pull request from one of a branch of the repository, so every
    # pull request's build counts as a fork's: one that gets a secret lets whoever opened it read it.
    secrets_for_forks: bool = setting(Bool(), default=False, doc="a secret may name the event pull_request, whose "
                                                                 "builds run anyone's code")

    def node_status_token_path(self, base: Path, node_id: int) -> Path:
        """Node `node_id`'s status token file, relative to `base` (the configuration's folder)."""
        return (base / per_node(self.node_status_token_file, node_id)).resolve()
