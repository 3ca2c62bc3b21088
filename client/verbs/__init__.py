"""What the client does with its request core: one module per verb, and `Verbs`, which wires them.

Every verb's builds go through `submit`, which follows each to its verdict;
the cancels on their way (`cancel.CancelBook`) are shared between the
builds they target and the cancels themselves.
"""

from __future__ import annotations

from client.events import EventStream
from client.records import BuildRecords
from client.requests import RequestCore
from client.verbs.approve import Approve
from client.verbs.cancel import Cancel, CancelBook
from client.verbs.deploys import Deploys
from client.verbs.matrix import MatrixRuns
from client.verbs.rerun import Rerun
from client.verbs.resume import Resume
from client.verbs.supersede import Supersede
from client.verbs.submit import Pin, Submit


class Verbs:
    def __init__(self, core: RequestCore, events: EventStream, records: BuildRecords, pin: Pin | None) -> None:
        cancels = CancelBook(core, records.builds, events)
        self.submit = Submit(core, events, cancels, records.store, pin)
        self.approve = Approve(records.approvals, self.submit, events)
        self.cancel = Cancel(cancels, self.submit.start, records.builds)
        self.rerun = Rerun(self.submit, records.store, core.f)
        self.deploys = Deploys(records.actions, self.submit.start, core.name)
        # Goes on with a matrix as its combinations end: it observes their verdicts.
        self.matrices = MatrixRuns(records.builds, self.submit.start, self.cancel, cancels, lambda: core.closing)
        events.subscribe(self.matrices.observe)
        # Cancels the older build of a concurrency group once f+1 nodes say a newer one supersedes it.
        self.supersede = Supersede(records.builds, self.cancel, cancels, core.name)
        events.subscribe(self.supersede.observe)
        self.resume = Resume(records.builds, self.submit, cancels, events, core.name, self.matrices)
