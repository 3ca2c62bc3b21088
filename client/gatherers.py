"""What the client gathers from the nodes on its own, for as long as it runs: other clients'
builds from the nodes' ledgers (client.ledgerimport) and the repositories' flaky tests from
the nodes' test records (client.flakycollector). Each is a cleanup context that starts after
the records' and stops before they close."""

from __future__ import annotations

from client.flakycollector import flaky_tests_ctx
from client.ledgerimport import ledger_import_ctx

GATHERERS = (ledger_import_ctx, flaky_tests_ctx)
