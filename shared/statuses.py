"""Commit statuses to a forge, in the shape of GitHub's statuses API (which Gitea and Forgejo
speak too) or of GitLab's (`status_style: gitlab`): what the client and the nodes both post.

The client posts the network's verdict under the repository's context
(client/statuses.py); a repository with `node_statuses` also gets each node's own
result under `<status_context>/node-<id>`, posted by that node with its own token
(node/statuses.py). Both go through `status_for`, which builds the URL from the
config and a checked commit sha only, and through a `StatusPoster`.

`StatusPoster` keeps posting off the build path: `post` never waits, a
bounded queue feeds a few worker tasks, and each status is retried with
exponential backoff. Only the newest state per commit and context is kept,
so a retried `pending` can never land after the `success` that replaced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator

import aiohttp

from pbft.build import Operation, Result, combination_label
from shared.config import RepositoryConfig
from shared.refs import check_commit_sha

log = logging.getLogger(__name__)

# GitHub refuses descriptions longer than this.
MAX_DESCRIPTION_CHARS = 140
# How long a shutdown waits for queued statuses before dropping them.
CLOSE_GRACE_S = 2.0
# How long close() waits for a cancelled worker to end before it cancels it again.
CANCEL_AGAIN_S = 0.1


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


# GitHub has no state for a build that did not run: status_for makes a skipped build's `pending`
# or, where the repository says so, `success`. GitLab has a state of its own.
_GITHUB_STATES = {"pending": "pending", "success": "success", "failure": "failure", "error": "error",
                  "cancelled": "error"}
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
        # Cancelled until each has ended: aiohttp may report a cancel that lands as a call's own
        # timeout fires as that timeout, and the worker then goes on to its next attempt.
        while pending := [worker for worker in self._workers if not worker.done()]:
            for worker in pending:
                worker.cancel()
            await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
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


@contextlib.asynccontextmanager
async def running_poster(grace_s: float | None = None) -> AsyncIterator[StatusPoster]:
    """A started poster with a session of its own (the forge's TLS, not the network's CA),
    closed on the way out: statuses still queued get `grace_s` (CLOSE_GRACE_S) to go out."""
    async with aiohttp.ClientSession() as session:
        poster = StatusPoster(session)
        poster.start()
        try:
            yield poster
        finally:
            await poster.close(CLOSE_GRACE_S if grace_s is None else grace_s)


@dataclass(frozen=True)
class StatusReport:
    """What a status says of one build, wherever it is posted: its state, the context it is
    posted under, a description and the page it links to."""

    state: str
    context: str
    description: str
    target_url: str
    build_id: str


def status_for(repository: RepositoryConfig, sha: str, report: StatusReport, *, token: str) -> CommitStatus | None:
    """The status to post for commit `sha` of `repository`, or None (logged) if `sha` is not
    a full commit sha: the sha becomes part of the URL the token is sent to.

    A `skipped` state is GitLab's own; on GitHub and Gitea it is `pending` unless the
    repository sets `skipped_passes`. A `success` there would pass a required check for a
    commit nothing built, and `pending` keeps it expected, as GitHub Actions does by posting
    nothing for a run it skips; `description` says it was skipped (result_text)."""
    try:
        check_commit_sha(sha)
    except ValueError:
        log.warning("no status for build %s: commit %r is not a full sha", report.build_id, sha[:80])
        return None
    state = report.state
    if state == "skipped" and repository.status_style != "gitlab":
        state = "success" if repository.skipped_passes else "pending"
    api = repository.status_api.rstrip("/")
    if repository.status_style == "gitlab":
        # A project by its path, URL-encoded as one segment (group%2Fsub%2Fproject).
        url = f"{api}/projects/{urllib.parse.quote(repository.full_name, safe='')}/statuses/{sha}"
    else:
        url = f"{api}/repos/{repository.full_name}/statuses/{sha}"
    return CommitStatus(
        url=url,
        token=token,
        state=state,
        context=report.context,
        description=report.description[:MAX_DESCRIPTION_CHARS],
        target_url=report.target_url,
        build_id=report.build_id,
        style=repository.status_style,
    )


def status_context(repository: RepositoryConfig, operation: Operation) -> str:
    """The status context of a build: the repository's, and a matrix combination's label after
    it (bounded by builder/plan/matrix.py), so that each combination has a check of its own."""
    if operation.combination is None:
        return repository.status_context
    return f"{repository.status_context}/{combination_label(operation.combination)}"


# The status of a result, by its status; any other result (error, timeout) is an error.
STATE_OF_RESULT = {"success": "success", "failure": "failure", "skipped": "skipped", "cancelled": "cancelled"}


def state_of(result: Result) -> str:
    return STATE_OF_RESULT.get(result.status, "error")


def result_text(result: Result) -> str:
    """`build passed (exit 0)`, `build failed (exit 1): step 'test' failed with exit code 1`,
    `build error: <reason>`: a result in a status's description, the same words whether the
    network agreed on it or one node says it."""
    exit_code = "" if result.exit_code is None else f" (exit {result.exit_code})"
    what = {
        "success": f"passed{exit_code}",
        "failure": f"failed{exit_code}",
        "timeout": f"timed out{exit_code}",
        "skipped": f"skipped, nothing built: {result.reason}",
        "cancelled": "cancelled",
    }.get(result.status, f"error{exit_code}: {result.reason}")
    failing = result.failure_reason()
    return f"build {what}" + (f": {failing}" if failing is not None else "")
