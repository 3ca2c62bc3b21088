"""Build plans compiled without Docker, git or files (builder/plan/compilebuild.py): a build
order, a checkout of `Sources` and the network's limits in, the plan out."""

from pathlib import Path

import yaml

from builder.order import BuildOrder, RepositorySettings
from builder.plan.buildplan import CheckedOut, Sources
from builder.plan.civars import BuildFacts
from builder.plan.compilebuild import compile_build
from builder.plan.secrets import RepositorySecrets
from builder.plan.triggers import Skips, Trigger
from shared.config import BuildConfig, BuildSecretConfig

COMMIT = "c" * 40
COMMITTED_S = 1_704_067_200
LIMITS = BuildConfig()
# Files no test writes: compiling names a secret's file and never reads it.
NEVER_READ = Path("/nonexistent/pbft-ci-test/secret")
SECRETS = RepositorySettings(secrets=RepositorySecrets((
    BuildSecretConfig("DEPLOY_TOKEN", NEVER_READ, ("push", "tag")),
    BuildSecretConfig("DB_PASSWORD", NEVER_READ, ("push", "pull_request")),
    BuildSecretConfig("PR_ONLY", NEVER_READ, ("pull_request",)),
), True))


def order(**fields) -> BuildOrder:
    return BuildOrder(build_id="b-1", repository_name="My_Repo", repository_url="/nowhere", branch="main", **fields)


def checkout(sources: Sources, *, message="change", event="push", pull_ref=None) -> CheckedOut:
    facts = BuildFacts(build_id="b-1", repository="My_Repo", event=event, branch="main", commit=COMMIT,
                       message=message, author_name="a", author_email="a@example.invalid", pull_ref=pull_ref)
    return CheckedOut(facts, COMMITTED_S, Skips(Trigger(event, "main", None, pull_ref), message, None), sources)


def compiled(spec: dict | None, *, build_order=None, limits=LIMITS, node_environment=None, **checkout_fields):
    sources = Sources(spec=yaml.safe_dump(spec, sort_keys=False).encode()) if spec is not None else Sources()
    return compile_build(build_order or order(), checkout(sources, **checkout_fields), limits, node_environment or {})
