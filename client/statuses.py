"""Commit statuses back to the forge, in the shape of GitHub's statuses API (which Gitea
and Forgejo speak too) or of GitLab's (`status_style: gitlab`).

A repository reports statuses when its config has `status_api`,
`status_token` and `full_name`. `CommitStatuses` turns the service's events
into statuses: `pending` right after a request is submitted, and `success`,
`failure` or `error` once a verdict is accepted. The client cannot see when
a request is ordered (nodes reply only after the build), so "pending" means
"submitted to the network for ordering and building"; that is honest and
early enough for a forge to show the check as running.

A status names a commit. Pending is posted only for a request that pins one;
a request for a branch head learns its commit from the agreed result, so its
first status is the final one. A verdict with no commit at all (a branch
that does not exist) gets no status.

A matrix (node/build/matrix.py) gives each combination's build a context of its own,
`<status_context>/<AXIS=value,...>`, pending when submitted and then its
verdict. The build that expanded into them has the repository's own context,
which its submission already made pending: it stays pending until every
combination has a verdict, then says `success` if all passed (or were
skipped), `failure` if one failed, and `error` otherwise. So a forge's rule
that requires the repository's context still means "the build passed", with
or without a matrix. Which combinations are waiting is kept in memory; a
client restarted meanwhile reads it back from the matrix build's record when
it resumes the combinations (`resumed`).

`StatusPoster` keeps all of this off the build path: `post` never waits, a
bounded queue feeds a few worker tasks, and each status is retried with
exponential backoff. Only the newest state per commit and context is kept,
so a retried `pending` can never land after the `success` that replaced it.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from client.records import disputed_reason, disputed_result
from client.service import Verdict
from shared.config import NetworkConfig, RepositoryConfig
from pbft.build import MAX_COMBINATIONS, Operation, combination_label
from shared.refs import check_commit_sha
from pbft.wire import decode_struct

log = logging.getLogger(__name__)

# GitHub refuses descriptions longer than this.
MAX_DESCRIPTION_CHARS = 140
# How long a shutdown waits for queued statuses before dropping them.
CLOSE_GRACE_S = 2.0
# Combinations' builds followed for their expansion's status, at most (a thousand full
# matrices): past this many at once the oldest is forgotten, and its expansion's status
# stays pending.
MAX_FOLLOWED_COMBINATIONS = 1000 * MAX_COMBINATIONS


@dataclass
class _Matrix:
    """A matrix build's combinations, by build id, and the state each one's verdict gave its
    status (None while it has none): what the expansion's own status waits for."""

    repository: RepositoryConfig
    sha: str
    build_id: str
    states: dict[str, str | None]


@dataclass(frozen=True)
class CommitStatus:
    """One status to post; `url` is built from the config and a checked commit sha only."""

    url: str
    token: str = field(repr=False)
    state: str
    context: str
    description: str
    target_url: str
    build_id: str
    style: str = "github"

    def headers(self) -> dict:
        if self.style == "gitlab":
            # The header GitLab documents for personal, project and group access tokens.
            return {"PRIVATE-TOKEN": self.token}
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json"}

    def body(self) -> dict:
        if self.style == "gitlab":
            # GitLab names the context `name` and has no "failure" or "error": both are failed.
            return {
                "state": _GITLAB_STATES[self.state],
                "name": self.context,
                "description": self.description,
                "target_url": self.target_url,
            }
        return {
            "state": _GITHUB_STATES[self.state],
            "context": self.context,
            "description": self.description,
            "target_url": self.target_url,
        }


# A skipped build is a success to GitHub (a required check passes), GitLab has a state of its own.
_GITHUB_STATES = {"pending": "pending", "success": "success", "failure": "failure", "error": "error",
                  "skipped": "success", "cancelled": "error"}
_GITLAB_STATES = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed",
                  "skipped": "skipped", "cancelled": "canceled"}


class StatusPoster:
    """Posts statuses in the background: bounded, retried, newest state per commit wins."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        workers: int = 4,
        max_queued: int = 1000,
        max_attempts: int = 5,
        first_backoff_s: float = 0.5,
        call_timeout_s: float = 10.0,
    ) -> None:
        self._session = session
        self._worker_count = workers
        self._max_attempts = max_attempts
        self._first_backoff_s = first_backoff_s
        self._call_timeout = aiohttp.ClientTimeout(total=call_timeout_s)
        # Keys waiting for a worker; a key is in `_latest` from when it is
        # queued until a worker has posted its newest status.
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(max_queued)
        self._latest: dict[tuple[str, str], CommitStatus] = {}
        self._workers: list[asyncio.Task] = []
        self._closed = False

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._worker_count)]

    def post(self, status: CommitStatus) -> bool:
        """Queue `status` without waiting; False if it was dropped."""
        if self._closed:
            log.warning("status %s for build %s dropped: shutting down", status.state, status.build_id)
            return False
        key = (status.url, status.context)
        if key in self._latest:
            # A worker already owns this commit; it posts the newest state next.
            self._latest[key] = status
            return True
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            log.warning("status %s for build %s dropped: queue full", status.state, status.build_id)
            return False
        self._latest[key] = status
        return True

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        self._closed = True
        try:
            async with asyncio.timeout(grace_s):  # not wait_for: see client/links.py _challenge
                await self._queue.join()
        except asyncio.TimeoutError:
            log.warning("shutting down with %d commit statuses not posted", len(self._latest))
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._deliver(key)
            except Exception:
                log.exception("bug while posting a commit status")
                self._latest.pop(key, None)
            finally:
                self._queue.task_done()

    async def _deliver(self, key: tuple[str, str]) -> None:
        while True:
            status = self._latest[key]
            await self._post_with_retries(key, status)
            if self._latest[key] is status:
                del self._latest[key]
                return

    async def _post_with_retries(self, key: tuple[str, str], status: CommitStatus) -> None:
        backoff_s = self._first_backoff_s
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(backoff_s)
                backoff_s *= 2
                if self._latest[key] is not status:
                    log.info("status %s for build %s superseded before it was posted", status.state, status.build_id)
                    return
            if not await self._post_once(status, attempt):
                return
        log.warning(
            "gave up on status %s for build %s at %s after %d attempts",
            status.state, status.build_id, status.url, self._max_attempts,
        )

    async def _post_once(self, status: CommitStatus, attempt: int) -> bool:
        """Post once; True if it is worth trying again."""
        headers = status.headers()
        try:
            # No redirects: the token goes only to the URL the config names.
            async with self._session.post(
                status.url, json=status.body(), headers=headers, timeout=self._call_timeout, allow_redirects=False
            ) as response:
                code = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.warning(
                "status %s for build %s, attempt %d: %s %s",
                status.state, status.build_id, attempt, type(error).__name__, str(error)[:200],
            )
            return True
        if 200 <= code < 300:
            log.info("posted status %s for build %s to %s", status.state, status.build_id, status.url)
            return False
        retry = code == 429 or code >= 500
        log.warning(
            "status %s for build %s, attempt %d: HTTP %d%s",
            status.state, status.build_id, attempt, code, "" if retry else " (not retried)",
        )
        return retry


def reports_statuses(repository: RepositoryConfig) -> bool:
    return bool(repository.status_api and repository.status_token and repository.full_name)


class CommitStatuses:
    """Turns the service's submissions and verdicts into commit statuses (a service observer)."""

    def __init__(self, config: NetworkConfig, client_name: str, poster: StatusPoster) -> None:
        self._repositories = {repo.name: repo for repo in config.repositories if reports_statuses(repo)}
        client = config.client(client_name)
        base_url = client.public_url or f"http://{client.host}:{client.port}"
        self._builds_url = base_url.rstrip("/") + "/builds/"
        self._approvals_url = base_url.rstrip("/") + "/approvals/"
        self._n = config.n
        self._quorum = config.f + 1
        self._poster = poster
        self._matrices: dict[str, _Matrix] = {}  # by the build id of each of their combinations

    def submitted(self, build_id: str, operation: Operation) -> None:
        repository = self._repositories.get(operation.repository)
        if repository is None or operation.cancels is not None:  # a cancel has no commit of its own
            return
        if operation.commit is None:
            log.info("no pending status for build %s: its commit is known only from the verdict", build_id)
            return
        description = f"ordering and building on {self._n} nodes; {self._quorum} must agree"
        context = _context(repository, operation)
        self._post(repository, operation.commit, build_id, "pending", description, context=context)

    def awaiting_approval(self, approval_id: str, operation: Operation) -> None:
        repository = self._repositories.get(operation.repository)
        if repository is None or operation.commit is None:
            return
        description = "waiting for approval: a pull request from a fork is built once approved"
        self._post(repository, operation.commit, approval_id, "pending", description,
                   target_url=self._approvals_url + approval_id)

    def finished(self, operation: Operation, verdict: Verdict) -> None:
        repository = self._repositories.get(operation.repository)
        if repository is None or operation.cancels is not None:
            return
        if verdict.abandoned:
            # The network may still build it; a status saying otherwise would be a guess.
            log.info("no status for build %s: abandoned at shutdown", verdict.build_id)
            return
        if verdict.disputed:
            sha = operation.commit or disputed_result(verdict.split, self._quorum - 1)["commit"]
        else:
            sha = operation.commit or (verdict.result.commit if verdict.accepted or verdict.divergent else None)
        if sha is None:
            log.info("no status for build %s: neither the request nor the verdict names a commit", verdict.build_id)
            return
        if verdict.matrix:
            self._follow_matrix(repository, sha, verdict)
            return
        state, description = self._final(verdict)
        self._post(repository, sha, verdict.build_id, state, description, context=_context(repository, operation))
        matrix = self._matrices.pop(verdict.build_id, None)
        if matrix is not None:
            matrix.states[verdict.build_id] = state
            self._post_matrix(matrix)

    def resumed(self, build_ids: list[int], matrices: list[dict]) -> None:
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
            self._track(_Matrix(repository, sha, record["build_id"], states))

    def _follow_matrix(self, repository: RepositoryConfig, sha: str, verdict: Verdict) -> None:
        matrix = _Matrix(repository, sha, verdict.build_id, {build_id: None for build_id, _ in verdict.matrix})
        self._track(matrix)
        self._post_matrix(matrix)

    def _track(self, matrix: _Matrix) -> None:
        for build_id, state in matrix.states.items():
            if state is None:
                self._matrices[build_id] = matrix
        while len(self._matrices) > MAX_FOLLOWED_COMBINATIONS:
            forgotten = self._matrices.pop(next(iter(self._matrices)))
            log.warning("status of matrix build %s left pending: more than %d combinations followed at once",
                        forgotten.build_id, MAX_FOLLOWED_COMBINATIONS)

    def _post_matrix(self, matrix: _Matrix) -> None:
        """The expansion's status: pending until each combination has its verdict, then theirs together."""
        states = [state for state in matrix.states.values() if state is not None]
        count = len(matrix.states)
        if len(states) < count:
            description = f"matrix of {count} builds, each with a status of its own: {len(states)} have a verdict"
            self._post(matrix.repository, matrix.sha, matrix.build_id, "pending", description)
            return
        if all(state in ("success", "skipped") for state in states):
            state = "success"
        else:
            state = "failure" if "failure" in states else "error"
        tally = ", ".join(f"{states.count(each)} {each}" for each in sorted(set(states)))
        self._post(matrix.repository, matrix.sha, matrix.build_id, state, f"matrix of {count} builds: {tally}")

    def _final(self, verdict: Verdict) -> tuple[str, str]:
        if verdict.divergent:
            # Not a failure of the tests: the nodes could not vouch for one set of bytes.
            differing = len(set(verdict.artifacts_by_node.values()))
            return "error", (
                f"build divergent: its artifacts differ between nodes ({differing} digests among "
                f"{len(verdict.artifacts_by_node)} nodes); not reproducible, or a node lies"
            )
        if verdict.disputed:
            # Not a verdict on the tests: the nodes disagree (a flaky build, or faulty nodes).
            return "error", f"disputed: {disputed_reason(verdict.split)}"
        if not verdict.accepted:
            return "error", f"no {self._quorum} nodes agreed on a result before the deadline"
        result = verdict.result
        exit_code = "" if result.exit_code is None else f" (exit {result.exit_code})"
        what = {
            "success": f"passed{exit_code}",
            "failure": f"failed{exit_code}",
            "timeout": f"timed out{exit_code}",
            "skipped": f"skipped: {result.reason}",
            "cancelled": "cancelled",
        }.get(result.status, f"error{exit_code}: {result.reason}")
        state = _STATE_OF_RESULT.get(result.status, "error")
        # The agreement is the point of this CI, so the end of the text is kept whole.
        agreement = f"; agreed by nodes {', '.join(map(str, verdict.agreed_by))}"
        return state, f"build {what}"[: MAX_DESCRIPTION_CHARS - len(agreement)] + agreement

    def _post(
        self, repository: RepositoryConfig, sha: str, build_id: str, state: str, description: str,
        target_url: str | None = None, context: str | None = None,
    ) -> None:
        try:
            check_commit_sha(sha)
        except ValueError:
            log.warning("no status for build %s: commit %r is not a full sha", build_id, sha[:80])
            return
        api = repository.status_api.rstrip("/")
        if repository.status_style == "gitlab":
            # A project by its path, URL-encoded as one segment (group%2Fsub%2Fproject).
            url = f"{api}/projects/{urllib.parse.quote(repository.full_name, safe='')}/statuses/{sha}"
        else:
            url = f"{api}/repos/{repository.full_name}/statuses/{sha}"
        self._poster.post(CommitStatus(
            url=url,
            token=repository.status_token,
            state=state,
            context=context or repository.status_context,
            description=description[:MAX_DESCRIPTION_CHARS],
            target_url=target_url or self._builds_url + build_id,
            build_id=build_id,
            style=repository.status_style,
        ))


# The status of an accepted verdict, by its result's status; any other verdict is an error.
_STATE_OF_RESULT = {"success": "success", "failure": "failure", "skipped": "skipped", "cancelled": "cancelled"}


def _record_state(build: dict) -> str:
    """The status a combination's record (as a matrix's record lists it) gave its build."""
    return _STATE_OF_RESULT.get(build["status"], "error") if build["state"] == "accepted" else "error"


def _context(repository: RepositoryConfig, operation: Operation) -> str:
    """The status context of a build: the repository's, and a matrix combination's label after
    it (bounded by node/build/matrix.py), so that each combination has a check of its own."""
    if operation.combination is None:
        return repository.status_context
    return f"{repository.status_context}/{combination_label(operation.combination)}"


def commit_statuses_ctx(
    config: NetworkConfig, client_name: str, service_key: web.AppKey
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that posts statuses for the app's service; it must come after the service's."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        names = [repo.name for repo in config.repositories if reports_statuses(repo)]
        if not names:
            yield
            return
        log.info("posting commit statuses for %s", ", ".join(names))
        async with aiohttp.ClientSession() as session:
            poster = StatusPoster(session)
            poster.start()
            app[service_key].observe(CommitStatuses(config, client_name, poster))
            yield
            await poster.close(CLOSE_GRACE_S)

    return ctx
