"""The build side: fetch the agreed commit, run its spec in locked-down containers, keep what it
leaves (caches, artifacts, logs) and say what happened.

A library the node's driver calls with one `BuildOrder` per agreed request, and whose sandbox the
action runner uses; it knows nothing of peers, the replica or the node's store, so the halves
change apart. Three layers (docs/ARCHITECTURE.md): `plan/` (pure), `workspace/` and `engine/`.

This module is the entry others use (the runner imports nothing else of it). Its names are
loaded on first use, so that importing the order does not load the Docker SDK: nodes with a
substitute build (tests, `--instant-builds`) never touch Docker.
"""

import importlib

_PUBLIC = {
    "BuildOrder": "builder.order",
    "RepositorySettings": "builder.order",
    "BuildResult": "builder.result",
    "Executor": "builder.executor",
    "ExecutorSettings": "builder.settings",
    # What the action runner runs an `after:` action with: the commit's spec, a mirror, a sandbox.
    "SPEC_FILE": "builder.plan.spec",
    "spec_document": "builder.plan.spec",
    "ActionSpec": "builder.plan.actions",
    "parse_actions": "builder.plan.actions",
    "SECRET_NAME": "builder.plan.actions",
    "GitError": "builder.workspace.gitmirror",
    "GitMirrors": "builder.workspace.gitmirror",
    "Identities": "builder.engine.identity",
    "Sandbox": "builder.engine.sandbox",
    "SandboxError": "builder.engine.sandbox",
    "Script": "builder.engine.sandbox",
    "run_container": "builder.engine.container",
    "ContainerJob": "builder.engine.container",
    "Hooks": "builder.engine.sandbox",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'builder' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
