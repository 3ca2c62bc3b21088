"""Each node's own commit status (docs/forges.md, "Each node's own status").

The client posts the network's verdict; a compromised client could post any verdict
it likes. A repository with `node_statuses` therefore also hears from every node
directly: once a node's own build of a request has a result (the result it signs
in its REPLY and its RESULT vote), the node posts it under
`<status_context>/node-<id>` with a forge token only it holds, so the forge shows
each node's voice beside the client's and a branch rule can ask for f+1 or 2f+1
of them. A Byzantine node posts what it votes, lies included: that is the point,
the forge sees which node said what.

What a node posts, and what it leaves out:

- the state the client would give that result (shared.statuses.state_of) and
  `node <id>: build failed (exit 1)` as its description;
- to the request's pinned commit, else the commit the node's own result names;
  a result without a full commit sha gets no status;
- a matrix combination's build under `<status_context>/<AXIS=value,...>/node-<id>`,
  and the build that expanded into the combinations none: its result is a plan,
  not a pass or a fail, and each combination's own status follows;
- nothing for a cancel: it has no commit of its own (the cancelled build's own
  result, `cancelled`, is posted like any other);
- a link to this node's output of the build as the client serves it
  (`<client>/builds/<id>/log?node=<id>`): a node serves build output only to the
  network's clients, on signed requests, so the client's page is the one a
  reader of the forge can open. The link is a convenience; the state and the
  description are the node's own word.

The node reads its token file when it starts (no token, no start) and again
for each status it posts, so a job that renews a short-lived token (a GitHub
App's installation token lasts an hour) only has to replace the file.

Posting never holds up the protocol: `finished` queues the status on a
shared.statuses.StatusPoster (bounded, retried in the background) and returns.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import AsyncIterator

from pbft.build import Result
from pbft.messages import Request
from shared.config import ConfigError, NetworkConfig, read_node_status_token
from shared.statuses import (
    StatusPoster, StatusReport, result_text, running_poster, state_of, status_context, status_for,
)

log = logging.getLogger(__name__)


class NodeStatuses:
    """Turns this node's own build results into commit statuses of its own context."""

    def __init__(
        self, config: NetworkConfig, node_id: int, token_files: dict[str, Path], poster: StatusPoster
    ) -> None:
        self._node_id = node_id
        self._set(config, token_files)
        self._poster = poster

    def reconfigure(self, config: NetworkConfig) -> None:
        """Post for `config`'s repositories from now on (a reload, shared.reload, which checked
        this node's token files); a build started before gets the status the new settings say."""
        self._set(config, node_status_token_paths(config, self._node_id))

    def _set(self, config: NetworkConfig, token_files: dict[str, Path]) -> None:
        self._repositories = {repo.name: repo for repo in config.repositories if repo.name in token_files}
        self._token_files = token_files
        self._client_urls = {client.name: client.base_url for client in config.clients}

    def finished(self, request: Request, result: Result) -> None:
        """This node's build of `request` ended with `result` (what it signs and votes)."""
        operation = request.operation
        repository = self._repositories.get(operation.repository)
        if (repository is None or operation.cancels is not None or operation.approves is not None
                or result.status == "matrix"):
            return
        build_id = f"{request.client}-{request.timestamp}"
        sha = operation.commit or result.commit
        if sha is None:
            log.info("node=%d no status of its own for build %s: no commit", self._node_id, build_id)
            return
        try:
            token = read_node_status_token(self._token_files[repository.name])
        except ValueError as error:  # says which file and what is wrong with it, never what it holds
            log.warning("node=%d no status of its own for build %s: %s", self._node_id, build_id, error)
            return
        # The client's id of a build is the request's timestamp (client/requests.py).
        log_url = f"{self._client_urls[request.client]}/builds/{request.timestamp}/log?node={self._node_id}"
        status = status_for(repository, sha, StatusReport(
            state=state_of(result), context=f"{status_context(repository, operation)}/node-{self._node_id}",
            description=f"node {self._node_id}: {result_text(result)}", target_url=log_url, build_id=build_id,
        ), token=token)
        if status is not None:
            self._poster.post(status)


def node_status_token_files(config: NetworkConfig, node_id: int) -> dict[str, Path]:
    """Node `node_id`'s own status token file for each repository with `node_statuses`, by name,
    each checked to hold a token. Raises ConfigError naming the file when one does not: the
    operator asked for this node's voice, so a node that cannot give it does not start."""
    files, problems = node_status_token_paths(config, node_id), []
    for name, path in files.items():
        try:
            read_node_status_token(path)
        except ValueError as error:
            problems.append(f"repository {name}: node_status_token_file: node {node_id}: {error}")
    if problems:
        raise ConfigError(config.path, problems)
    return files


def node_status_token_paths(config: NetworkConfig, node_id: int) -> dict[str, Path]:
    """Node `node_id`'s own status token file for each repository with `node_statuses`, by name."""
    return {repository.name: repository.node_status_token_path(config.path.parent, node_id)
            for repository in config.repositories if repository.node_statuses}


@contextlib.asynccontextmanager
async def posting_node_statuses(
    config: NetworkConfig, node_id: int, token_files: dict[str, Path]
) -> AsyncIterator[NodeStatuses]:
    """What the driver tells each of this node's results (`finished`), given
    `node_status_token_files`; the statuses still queued get a short grace on the way out.
    The poster runs even when no repository asks for node statuses yet: a reload may add one."""
    if token_files:
        log.info("node=%d posts its own commit statuses for %s", node_id, ", ".join(token_files))
    async with running_poster() as poster:
        yield NodeStatuses(config, node_id, token_files, poster)
