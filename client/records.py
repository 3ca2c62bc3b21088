"""The build records of one client: one SQLite file, one connection, one class per concern.

Each concern reads and writes its own tables over the one connection
(client.tables.store), so a write of any of them joins the same transaction
and one group commit makes a build's request, its forge delivery and its
links to other builds durable together:

- `builds`: one row per request, its links (re-runs, matrices) and how it is listed;
- `verdicts`: how each build ended, and the replies that came after;
- `approvals`: fork pull requests waiting for someone to approve them;
- `deliveries`: forge delivery ids already answered;
- `imported`: how far this client has read the order for other clients' builds;
- `actions`: what action runners reported after a verdict;
- `slots`: the slot each schedule fired for last;
- `flaky`: the tests proven flaky in branch builds, for the repositories' pages;
- `audit`: who did what, read from the builds' signed requests;
- `tokens`: the personal API tokens, by their hashes;
- `sessions`: who is signed in, by their cookies' hashes.
"""

from __future__ import annotations

from pathlib import Path

from client.tables.actions import Actions
from client.tables.approvals import Approvals
from client.tables.audit import Audit
from client.tables.builds import Builds
from client.tables.deliveries import Deliveries
from client.tables.flaky import FlakyTests
from client.tables.imported import Imported
from client.tables.slots import ScheduleSlots
from client.tables.sessions import Sessions
from client.tables.store import RecordStore
from client.tables.tokens import Tokens
from client.tables.verdicts import Verdicts


def records_path(data_dir: Path, client_name: str) -> Path:
    return data_dir / f"client-{client_name}" / "builds.sqlite"


class BuildRecords:
    def __init__(self, path: Path) -> None:
        self.store = RecordStore(path)
        self.actions = Actions(self.store)
        self.builds = Builds(self.store, self.actions)
        self.verdicts = Verdicts(self.store)
        self.approvals = Approvals(self.store)
        self.deliveries = Deliveries(self.store)
        self.imported = Imported(self.store)
        self.slots = ScheduleSlots(self.store)
        self.flaky = FlakyTests(self.store)
        self.audit = Audit(self.store)
        self.tokens = Tokens(self.store)
        self.sessions = Sessions(self.store)

    def close(self) -> None:
        self.store.close()
