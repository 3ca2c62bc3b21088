"""Commit statuses back to the forge, in the shape of GitHub's statuses API (which Gitea
and Forgejo speak too) or of GitLab's (`status_style: gitlab`).

A repository reports statuses when its config has `status_api`,
`status_token` and `full_name`. `CommitStatuses` turns the client's events
(client.events) into statuses: `pending` right after a request is submitted, and `success`,
`failure` or `error` once a verdict is accepted (a skipped build's stays
`pending` on GitHub and Gitea, saying so, unless the repository sets
`skipped_passes`: shared.statuses.status_for). The client cannot see when
a request is ordered (nodes reply only after the build), so "pending" means
"submitted to the network for ordering and building"; that is honest and
early enough for a forge to show the check as running.

A status names a commit. Pending is posted only for a request that pins one;
a request for a branch head learns its commit from the agreed result, so its
first status is the final one. A verdict with no commit at all (a branch
that does not exist) gets no status.

A matrix (builder/plan/matrix.py) gives each combination's build a context of its own,
`<status_context>/<AXIS=value,...>`, pending when submitted and then its
verdict. The build that expanded into them has the repository's own context,
which its submission already made pending: it stays pending until every
combination has a verdict, then says `success` if all passed (or some were
skipped and the rest passed), `skipped` if all were skipped (posted as any
skipped build's status is: shared.statuses.status_for), `failure` if one
failed, and `error` otherwise. So a forge's rule that requires the
repository's context still means "the build passed", with or without a
matrix. Which combinations are waiting is kept in memory; a client restarted
meanwhile reads it back from the matrix build's record when it resumes the
combinations (`resumed`).

An accepted verdict's status links to its certificate (`/builds/<id>/certificate`),
the f+1 signed replies anyone can check offline; a pending status, a verdict
without one (timeout, divergent, disputed) and a matrix's own summary link to
the build's page. With `node_statuses`, each node also posts its own result
(node/statuses.py): then the client's word is not all the forge hears.

Posting itself (the URLs, the bodies, the bounded and retried queue) is
shared.statuses, which the nodes use too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from aiohttp import web

from client.events import Event, Finished, HeldForApproval, OrderCancelled, Requested, Resumed, Submitted
from client.outcome import (
    Abandoned, Accepted, Disputed, Divergent, Outcome, TimedOut, Verdict, disputed_reason,
    disputed_result,
)
from shared.config import NetworkConfig, RepositoryConfig
from shared.reload import LiveConfig
from shared.statuses import (
    MAX_DESCRIPTION_CHARS, STATE_OF_RESULT, StatusPoster, StatusReport, result_text, running_poster, state_of,
    status_context, status_for,
)
from pbft.build import MAX_COMBINATIONS, Operation
from pbft.deliveries import is_duplicate
from pbft.wire import decode_struct

log = logging.getLogger(__name__)

# Combinations' builds followed for their expansion's status, at most (a thousand full
# matrices): past this many at once the oldest is forgotten, and its expansion's status
# stays pending.
MAX_FOLLOWED_COMBINATIONS = 1000 * MAX_COMBINATIONS


@dataclass(frozen=True)
class _Subject:
    """What a status speaks of: a commit of a repository, and the build (or approval) it is about."""

    repository: RepositoryConfig
    sha: str
    build_id: str


@dataclass
class _Matrix:
    """A matrix build's combinations, by build id, and the state each one's verdict gave its
    status (None while it has none): what the expansion's own status waits for."""

    subject: _Subject
    states: dict[str, str | None]
    # How many combinations the expansion has, and whether the first that does not pass stops
    # the others (its verdict's strategy): builds the client starts later join `states`.
    total: int = 0
    fail_fast: bool = False

    def settled(self) -> bool:
        """Every combination that will have a build has its verdict."""
        states = list(self.states.values())
        if None in states:
            return False
        stopped = self.fail_fast and any(state not in ("success", "skipped") for state in states)
        return len(states) >= self.total or stopped


def reports_statuses(repository: RepositoryConfig) -> bool:
    return bool(repository.status_api and repository.status_token and repository.full_name)


class CommitStatuses:
    """Turns the client's submissions and verdicts into commit statuses (an observer of client.events)."""

    def __init__(self, config: NetworkConfig, client_name: str, poster: StatusPoster) -> None:
        self._client_name = client_name
        self.reconfigure(config)
        self._n = config.n
        self._quorum = config.f + 1
        self._poster = poster
        self._matrices: dict[str, _Matrix] = {}  # by the build id of each of their combinations
        self._expansions: dict[str, _Matrix] = {}  # by the expansion's build id, until settled

    def reconfigure(self, config: NetworkConfig) -> None:
        """Post with `config`'s repositories from now on (a reload, shared.reload): a verdict
        of a build started before gets the status the new settings say. A matrix followed
        meanwhile keeps the repository settings its expansion was posted with."""
        self._repositories = {repo.name: repo for repo in config.repositories if reports_statuses(repo)}
        client = config.client(self._client_name)
        self._builds_url = client.base_url + "/builds/"
        self._approvals_url = client.base_url + "/approvals/"

    def observe(self, event: Event) -> None:
        match event:
            case Submitted(build_id=build_id, operation=operation):
                self._submitted(build_id, operation)
            case HeldForApproval(approval_id=approval_id, operation=operation):
                self._awaiting_approval(approval_id, operation)
            case Finished(operation=operation, verdict=verdict) | OrderCancelled(operation=operation, verdict=verdict):
                self._finished(operation, verdict)
            case Resumed(matrices=matrices):
                self._resumed(matrices)
            case Requested(request=request, origin=origin) if origin.matrix_of is not None:
                # A combination the client starts after the expansion (the spec's max_parallel).
                matrix = self._expansions.get(str(origin.matrix_of))
                if matrix is not None and str(request.timestamp) not in matrix.states:
                    matrix.states[str(request.timestamp)] = None
                    self._track(matrix)

    def _submitted(self, build_id: str, operation: Operation) -> None:
        repository = self._repositories.get(operation.repository)
        # A cancel and a deploy's approval have no commit of their own.
        if repository is None or operation.cancels is not None or operation.approves is not None:
            return
        if operation.commit is None:
            log.info("no pending status for build %s: its commit is known only from the verdict", build_id)
            return
        description = f"ordering and building on {self._n} nodes; {self._quorum} must agree"
        context = status_context(repository, operation)
        self._post(_Subject(repository, operation.commit, build_id), "pending", description, context=context)

    def _awaiting_approval(self, approval_id: str, operation: Operation) -> None:
        repository = self._repositories.get(operation.repository)
        if repository is None or operation.commit is None:
            return
        description = "waiting for approval: a pull request from a fork is built once approved"
        self._post(_Subject(repository, operation.commit, approval_id), "pending", description,
                   target_url=self._approvals_url + approval_id)

    def _finished(self, operation: Operation, verdict: Verdict) -> None:
        repository = self._repositories.get(operation.repository)
        if repository is None or operation.cancels is not None or operation.approves is not None:
            return
        match verdict.outcome:
            case Abandoned():
                # The network may still build it; a status saying otherwise would be a guess.
                log.info("no status for build %s: abandoned at shutdown", verdict.build_id)
                return
            case Disputed(split=split):
                sha = operation.commit or disputed_result(split, self._quorum - 1)["commit"]
            case Accepted(result=result) if is_duplicate(operation, result):
                log.info("no status for build %s: its delivery's build reports it", verdict.build_id)
                return
            case Accepted(result=result) | Divergent(result=result):
                sha = operation.commit or result.commit
            case TimedOut():
                sha = operation.commit
        if sha is None:
            log.info("no status for build %s: neither the request nor the verdict names a commit", verdict.build_id)
            return
        if isinstance(verdict.outcome, Accepted) and verdict.outcome.matrix:
            result = verdict.outcome.result
            self._follow_matrix(_Matrix(_Subject(repository, sha, verdict.build_id), {
                build_id: None for build_id, _ in verdict.outcome.matrix}, len(result.combinations), result.fail_fast))
            return
        state, description = self._final(verdict.outcome)
        # An accepted verdict has a certificate; linking it lets whoever reads the status check
        # the f+1 signatures instead of taking the client's word.
        accepted = isinstance(verdict.outcome, Accepted)
        certificate_url = self._builds_url + verdict.build_id + "/certificate" if accepted else None
        self._post(_Subject(repository, sha, verdict.build_id), state, description, target_url=certificate_url,
                   context=status_context(repository, operation))
        matrix = self._matrices.pop(verdict.build_id, None)
        if matrix is not None:
            matrix.states[verdict.build_id] = state
            self._post_matrix(matrix)

    def _resumed(self, matrices: list[dict]) -> None:
        """Follow again the matrices whose combinations a restarted client resumed: the
        expansion's status waits for those, and counts the verdicts its record already lists."""
        for record in matrices:
            operation = decode_struct(Operation, record["request"]["operation"])
            repository = self._repositories.get(operation.repository)
            sha = operation.commit or (record["result"] or {}).get("commit")
            if repository is None or sha is None:
                continue
            states = {build["build_id"]: None if build["state"] == "pending" else _record_state(build)
                      for build in record["matrix_builds"]}
            result = record["result"] or {}
            self._track(_Matrix(_Subject(repository, sha, record["build_id"]), states,
                                len(result.get("combinations", ())), bool(result.get("fail_fast"))))

    def _follow_matrix(self, matrix: _Matrix) -> None:
        """Follow the builds a matrix verdict started: its own status waits for theirs."""
        self._track(matrix)
        self._post_matrix(matrix)

    def _track(self, matrix: _Matrix) -> None:
        self._expansions[matrix.subject.build_id] = matrix
        for build_id, state in matrix.states.items():
            if state is None:
                self._matrices[build_id] = matrix
        while len(self._expansions) > MAX_FOLLOWED_COMBINATIONS // MAX_COMBINATIONS:
            self._expansions.pop(next(iter(self._expansions)))
        while len(self._matrices) > MAX_FOLLOWED_COMBINATIONS:
            forgotten = self._matrices.pop(next(iter(self._matrices)))
            log.warning("status of matrix build %s left pending: more than %d combinations followed at once",
                        forgotten.subject.build_id, MAX_FOLLOWED_COMBINATIONS)

    def _post_matrix(self, matrix: _Matrix) -> None:
        """The expansion's status: pending until each combination has its verdict, then theirs together."""
        states = [state for state in matrix.states.values() if state is not None]
        count = max(matrix.total, len(matrix.states))
        if not matrix.settled():
            description = f"matrix of {count} builds, each with a status of its own: {len(states)} have a verdict"
            self._post(matrix.subject, "pending", description)
            return
        self._expansions.pop(matrix.subject.build_id, None)
        if all(state == "skipped" for state in states):
            state = "skipped"  # nothing was built: no more a pass than one skipped build
        elif all(state in ("success", "skipped") for state in states):
            state = "success"
        else:
            state = "failure" if "failure" in states else "error"
        tally = ", ".join(f"{states.count(each)} {each}" for each in sorted(set(states)))
        self._post(matrix.subject, state, f"matrix of {count} builds: {tally}")

    def _final(self, outcome: Outcome) -> tuple[str, str]:
        match outcome:
            case Divergent(artifacts_by_node=by_node):
                # Not a failure of the tests: the nodes could not vouch for one set of bytes.
                return "error", (
                    f"build divergent: its artifacts differ between nodes ({len(set(by_node.values()))} digests"
                    f" among {len(by_node)} nodes); not reproducible, or a node lies"
                )
            case Disputed(split=split):
                # Not a verdict on the tests: the nodes disagree (a flaky build, or faulty nodes).
                return "error", f"disputed: {disputed_reason(split)}"
            case Accepted(result=result, agreed_by=agreed_by):
                # The agreement is the point of this CI, so the end of the text is kept whole.
                agreement = f"; agreed by nodes {', '.join(map(str, agreed_by))}"
                described = result_text(result)[: MAX_DESCRIPTION_CHARS - len(agreement)]
                return state_of(result), described + agreement
        return "error", f"no {self._quorum} nodes agreed on a result before the deadline"

    def _post(
        self, subject: _Subject, state: str, description: str, target_url: str | None = None,
        context: str | None = None,
    ) -> None:
        repository = subject.repository
        status = status_for(repository, subject.sha, StatusReport(
            state=state, context=context or repository.status_context, description=description,
            target_url=target_url or self._builds_url + subject.build_id, build_id=subject.build_id,
        ), token=repository.status_token)
        if status is not None:
            self._poster.post(status)


def _record_state(build: dict) -> str:
    """The status a combination's record (as a matrix's record lists it) gave its build."""
    return STATE_OF_RESULT.get(build["status"], "error") if build["state"] == "accepted" else "error"


def commit_statuses_ctx(
    live: LiveConfig, client_name: str, service_key: web.AppKey
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that posts statuses of the app's service's builds; it must come after the service's.
    The poster runs even when no repository reports statuses yet: a reload may add one."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        names = [repo.name for repo in live.current.repositories if reports_statuses(repo)]
        if names:
            log.info("posting commit statuses for %s", ", ".join(names))
        async with running_poster() as poster:
            statuses = CommitStatuses(live.current, client_name, poster)
            live.on_reload(statuses.reconfigure)
            app[service_key].events.subscribe(statuses.observe)
            yield

    return ctx
