"""The records' SQLite schema, and bringing a file of any older version to it.

Every table of the records is made here, whatever class reads and writes it
(client.tables), so that one version number says what a file holds.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    build_id INTEGER PRIMARY KEY,
    repository TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_requested TEXT,
    submitted_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'timeout', 'divergent', 'disputed')),
    result TEXT,
    agreed_by TEXT NOT NULL DEFAULT '[]',
    elapsed_ms INTEGER,
    request TEXT NOT NULL,
    replies TEXT NOT NULL DEFAULT '[]',
    number INTEGER,
    commit_message TEXT,
    author TEXT,
    commit_url TEXT
);
CREATE TABLE IF NOT EXISTS client_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    repository TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    build_id INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (repository, delivery_id)
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    pull_ref TEXT NOT NULL,
    operation TEXT NOT NULL,
    delivery_id TEXT,
    received_at REAL NOT NULL,
    build_id INTEGER
);
CREATE INDEX IF NOT EXISTS builds_pending ON builds (repository, branch) WHERE state = 'pending';
CREATE UNIQUE INDEX IF NOT EXISTS builds_number ON builds (repository, number);
CREATE INDEX IF NOT EXISTS builds_ref ON builds (repository, branch, build_id);
CREATE INDEX IF NOT EXISTS builds_actor ON builds (json_extract(request, '$.operation.actor.name'), build_id);
CREATE TABLE IF NOT EXISTS reruns (
    build_id INTEGER PRIMARY KEY,
    rerun_of INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reruns_of ON reruns (rerun_of);
CREATE TABLE IF NOT EXISTS matrix_builds (
    build_id INTEGER PRIMARY KEY,
    matrix_of INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS matrix_builds_of ON matrix_builds (matrix_of);
CREATE TABLE IF NOT EXISTS actions (
    build_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    reported_at REAL NOT NULL,
    runner TEXT,
    signature TEXT,
    stamp_us INTEGER,
    environment TEXT,
    approver TEXT,
    PRIMARY KEY (build_id, name)
);
CREATE TABLE IF NOT EXISTS deploy_approvals (
    approval_id INTEGER PRIMARY KEY,
    build_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    environment TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deploy_approvals_of ON deploy_approvals (build_id, action);
CREATE TABLE IF NOT EXISTS tokens (
    token_id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT,
    repositories TEXT,
    groups TEXT,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    groups TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_members (
    start INTEGER PRIMARY KEY,
    f INTEGER NOT NULL,
    nodes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_found (
    build_id INTEGER PRIMARY KEY,
    after_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flaky_tests (
    repository TEXT NOT NULL,
    test TEXT NOT NULL,
    build_id INTEGER NOT NULL,
    passed_on TEXT NOT NULL,
    failed_on TEXT NOT NULL,
    PRIMARY KEY (build_id, test)
);
CREATE INDEX IF NOT EXISTS flaky_tests_repository ON flaky_tests (repository, build_id);
CREATE TABLE IF NOT EXISTS schedules (
    repository TEXT NOT NULL,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    branch TEXT NOT NULL,
    last_slot REAL NOT NULL,
    build_id INTEGER,
    PRIMARY KEY (repository, name)
);
"""

# Files of version 0 refuse the state 'divergent' in their CHECK, and files before
# version 5 the state 'disputed', which SQLite cannot alter: `migrate` copies their builds
# into a table made by the schema above. Version 2 adds the approvals table, version 3 the
# reruns and schedules tables, version 4 the matrix_builds table, version 6 the actions table,
# version 7 the builds' numbers per repository and their commits' message, author and link,
# version 8 who reported an action (the runner's name, its signature and stamp), version 9 the
# index of builds by who asked for them (client.tables.audit), version 10 the personal API
# tokens (client.tables.tokens) and the sessions of people signed in (client.tables.sessions),
# version 11 the groups of a token's owner (a token a person made for themselves), version 12
# the members the ledger import learnt from the order's changes and where in the order it found
# each imported build still pending (client.tables.imported), version 13 the tests proven
# flaky (client.tables.flaky), version 14 the deploy environment and approver of an action and
# the approvals of deploys (client.tables.actions).
SCHEMA_VERSION = 14
# The last version whose builds table the schema above cannot take as it is.
_REBUILT_BEFORE = 5
# The builds table's columns before version 7, which copies of older tables name, and the
# columns version 7 adds to a table it keeps.
_BUILD_COLUMNS_BEFORE_7 = (
    "build_id, repository, branch, commit_requested, submitted_at, state, result, agreed_by, elapsed_ms,"
    " request, replies"
)
BUILD_COLUMNS_OF_7 = {"number": "INTEGER", "commit_message": "TEXT", "author": "TEXT", "commit_url": "TEXT"}
# The actions table's columns version 8 adds. Reports recorded before have none: anyone with the
# client's token could write those, and the record says they are unsigned.
ACTION_COLUMNS_OF_8 = {"runner": "TEXT", "signature": "TEXT", "stamp_us": "INTEGER"}
# And those version 14 adds: a deploy's environment and who approved it.
ACTION_COLUMNS_OF_14 = {"environment": "TEXT", "approver": "TEXT"}
# The builds table's indexes, dropped before an old table is renamed: an index keeps its name
# when its table is renamed, so the schema would not make it again for the new table.
_BUILD_INDEXES = ("builds_pending", "builds_number", "builds_ref", "builds_actor")


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction: all of it or none of it."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"build records of schema version {version}; this client reads up to {SCHEMA_VERSION}")
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Other than the builds table's CHECK, older versions lack only tables the schema
        # creates if they do not exist.
        exists = version < _REBUILT_BEFORE and db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'builds'"
        ).fetchone()
        if exists:
            for index in _BUILD_INDEXES:  # made again for the new table
                db.execute(f"DROP INDEX IF EXISTS {index}")
            db.execute("ALTER TABLE builds RENAME TO builds_v0")
        else:
            _add_columns_of_7(db)
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        _add_action_columns_of_8(db)
        _add_token_columns_of_11(db)
        if exists:
            db.execute(
                f"INSERT INTO builds ({_BUILD_COLUMNS_BEFORE_7}) SELECT {_BUILD_COLUMNS_BEFORE_7} FROM builds_v0"
            )
            db.execute("DROP TABLE builds_v0")
        # Builds from before version 7 are numbered per repository in the order they were
        # submitted, which their ids (request timestamps) keep.
        db.execute(
            "UPDATE builds SET number = numbered.number FROM (SELECT build_id, row_number()"
            " OVER (PARTITION BY repository ORDER BY build_id) AS number FROM builds) AS numbered"
            " WHERE builds.build_id = numbered.build_id AND builds.number IS NULL"
        )
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _add_columns_of_7(db: sqlite3.Connection) -> None:
    """Give a builds table of versions 5 and 6 the columns version 7 adds (all nullable)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(builds)")}
    if not present:
        return  # a new file: the schema makes the table
    for name, kind in BUILD_COLUMNS_OF_7.items():
        if name not in present:
            db.execute(f"ALTER TABLE builds ADD COLUMN {name} {kind}")


def _add_token_columns_of_11(db: sqlite3.Connection) -> None:
    """Give a tokens table of version 10 the column version 11 adds (nullable: no groups)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(tokens)")}
    if "groups" not in present:
        db.execute("ALTER TABLE tokens ADD COLUMN groups TEXT")


def _add_action_columns_of_8(db: sqlite3.Connection) -> None:
    """Give an actions table of versions 6 to 13 the columns versions 8 and 14 add (all nullable)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(actions)")}
    for name, kind in {**ACTION_COLUMNS_OF_8, **ACTION_COLUMNS_OF_14}.items():
        if name not in present:
            db.execute(f"ALTER TABLE actions ADD COLUMN {name} {kind}")
