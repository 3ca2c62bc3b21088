"""The CI's own types, as the protocol carries them: what a client asks the network to
build (`Operation`, inside a REQUEST) and what a build produced (`Result`, with the
`Spec` it ran, inside every REPLY and RESULT vote).

The consensus core orders operations and counts matching results without
looking inside either; the executor makes results and the client reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbft.networkchange import NetworkChange
from pbft.wire import HEX64, NAME, SEQ, Bool, ExitCode, Int, ListOf, Optional, Pair, Struct, Text, struct, wire

# "skipped": the commit or its spec said not to build it for this trigger (builder/plan/triggers.py).
# "cancelled": the client's cancel was ordered while the node still had the build to run.
# "matrix": the spec at the commit declares a `matrix:` and the operation named none of its
# combinations; nothing ran, and the result lists the combinations (builder/plan/matrix.py).
STATUSES = ("success", "failure", "error", "timeout", "skipped", "cancelled", "matrix")
# What started a build: a forge's push, a tag push, a pull (merge) request, a plain call, a
# schedule. `when: event` names these; an operation names every one but a push, which it
# says by naming none (as every operation did before events existed): one encoding each.
EVENTS = ("push", "tag", "pull_request", "manual", "cron")
_OPERATION_EVENTS = EVENTS[1:]
# A sha256 as artifact manifests and results write it; the group is the hex.
SHA256_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_SPEC_PATH = re.compile(r"\.pbft-ci\.yml|Dockerfile")
# A Docker image reference: printable ASCII without spaces (the spec's own rule is "no spaces").
_IMAGE = re.compile(r"[!-~]{1,255}")
# A full commit name: SHA-1 or SHA-256, lowercase.
COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# The forge's own ref for the head of a pull request (GitHub, Gitea, Forgejo) or of a merge
# request (GitLab): the one form of a pull request's name that reaches git.
PULL_REF = re.compile(r"refs/(pull|merge-requests)/([1-9][0-9]{0,9})/head")


# A matrix's axis is an environment variable of its builds, and its value also goes into
# image names and into the forge's status context: both are kept plain and short, without
# `=` or `,`, which separate them in a combination's label (`combination_label`).
AXIS = re.compile(r"[A-Z_][A-Z0-9_]{0,31}")
AXIS_VALUE = re.compile(r"[A-Za-z0-9._:/@+][A-Za-z0-9._:/@+-]{0,63}")
MAX_AXES = 8
MAX_COMBINATIONS = 32
# One combination: its axes' (name, value) pairs, in the order the spec declares the axes.
COMBINATION = ListOf(
    Pair(("axis", Text(AXIS)), ("value", Text(AXIS_VALUE)), "a combination's entry must be [axis, value]"),
    MAX_AXES, minimum=1,
)

# A manual run's inputs (a spec's `inputs:`, builder/plan/inputs.py): each a name the spec
# declares and the value the run gives it, which reaches the build as CI_INPUT_<NAME>. Names
# are lowercase so that their variables never collide; values are one line of printable
# text (no control characters, no bidirectional overrides), since they are shown on pages
# and in logs as well as given to the build.
INPUT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
INPUT_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]{0,1024}")
MAX_INPUTS = 16
INPUTS = ListOf(
    Pair(("name", Text(INPUT_NAME)), ("value", Text(INPUT_VALUE)), "an input must be [name, value]"),
    MAX_INPUTS, minimum=1,
)


# What a change of the network document is recorded under: it builds nothing.
CHANGE_REPOSITORY = "network"
CHANGE_BRANCH = "change"


# Who asked for a request: a person signed in (`user`), a personal API token's owner
# (`token`), a forge's delivery by the account that pushed or opened the pull request
# (`forge`, named `<forge>:<login>`), a schedule (`schedule`, named `<repository>/<name>`),
# or the client's own machine token (`machine`, named after the client). The client signs
# it into the request, so every ledger, certificate and attestation names it
# (client/actors.py). A name is kept plain: it reaches logs, pages and SQL filters.
ACTOR_KINDS = ("user", "token", "forge", "schedule", "machine")
ACTOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:/-]{0,127}")
# What a delivery is named: printable ASCII without spaces, as forges' delivery ids are.
DELIVERY = re.compile(r"[!-~]{1,160}")


@struct
class Actor:
    kind: str = wire(Text(choices=ACTOR_KINDS))
    name: str = wire(Text(ACTOR_NAME, limit=128))

    def label(self) -> str:
        """`user alice@example.com`: how records, certificates and logs name it."""
        return f"{self.kind} {self.name}"


@struct
class Approval:
    """Not a build: a person approves that action `action` of build `build` (an earlier request
    of the same client, by its timestamp) deploys to `environment`. Ordered like a cancel, so
    every action runner reads the same decision, with who approved, from its certificate."""

    build: int = wire(SEQ)
    action: str = wire(NAME)  # as the spec's `after:` names it
    environment: str = wire(NAME)  # as the network document's `environments:` names it


def combination_label(combination: tuple[tuple[str, str], ...]) -> str:
    """`PYTHON=3.12,DB=postgres`: a combination as the status context and the records show it."""
    return ",".join(f"{axis}={value}" for axis, value in combination)


@struct
class Operation:
    """What a client asks the network to build.

    A push names its branch (or tag). A pull request names its forge ref (`pull_ref`,
    e.g. `refs/pull/12/head`), whose head every node checks is the pinned `commit`,
    and `branch` is the branch it targets. An operation without `pull_ref` has the wire
    form operations had before pull requests, so signatures made then still verify.
    """

    repository: str = wire(NAME)
    branch: str = wire(Text(limit=255))
    commit: str | None = wire(Optional(Text()), default=None)
    pull_ref: str | None = wire(Optional(Text(PULL_REF)), default=None, omit=None, kw_only=True)
    event: str | None = wire(Optional(Text(choices=_OPERATION_EVENTS)), default=None, omit=None, kw_only=True)
    # The commit the changed paths are counted from (a push's previous head, a pull
    # request's target), for `when: path`.
    before: str | None = wire(Optional(Text(COMMIT_SHA)), default=None, omit=None, kw_only=True)
    # Not a build: stop the same client's request of this timestamp, on every node at the
    # point of the order where this one executes (node/driver.py); repository and branch
    # are that build's.
    cancels: int | None = wire(Optional(SEQ), default=None, omit=None, kw_only=True)
    # A scheduled build's slot (unix seconds, a whole minute) that its schedule fired for
    # (client/schedules.py): agreed, so that what a schedule started is in the order.
    slot: int | None = wire(Optional(Int()), default=None, omit=None, kw_only=True)
    # One combination of the spec's `matrix:` to build (its commit pinned): a node builds it
    # only if its spec at the commit declares exactly this combination (builder/plan/matrix.py).
    combination: tuple[tuple[str, str], ...] | None = wire(
        Optional(COMBINATION), default=None, omit=None, kw_only=True
    )
    # Not a build: the network document in place of the one the network runs, signed by its
    # owners (`pbft.networkchange`); checked and applied where it executes (`pbft.networks`).
    # Its repository and branch are CHANGE_REPOSITORY and CHANGE_BRANCH.
    change: NetworkChange | None = wire(Optional(Struct(NetworkChange)), default=None, omit=None, kw_only=True)
    # Who asked for it (`Actor`). An operation signed before actors existed names none.
    actor: Actor | None = wire(Optional(Struct(Actor)), default=None, omit=None, kw_only=True)
    # What asked for it once, however many clients sign a request for it: a forge's delivery
    # (`<forge>:<delivery id>`) or a schedule's slot (`schedule:<name>@<slot>`). The order
    # builds the first request of a (repository, delivery) and answers the others `skipped`
    # (`pbft.deliveries`).
    delivery: str | None = wire(Optional(Text(DELIVERY, limit=160)), default=None, omit=None, kw_only=True)
    # A manual run's inputs, by name, in the order given: every node checks them against the
    # spec at the commit (an undeclared name or a value outside a choice is an `error`).
    inputs: tuple[tuple[str, str], ...] | None = wire(Optional(INPUTS), default=None, omit=None, kw_only=True)
    # Not a build: an approval of an action of this client's earlier build (`Approval`);
    # repository and branch are that build's.
    approves: Approval | None = wire(Optional(Struct(Approval)), default=None, omit=None, kw_only=True)

    @property
    def trigger_event(self) -> str:
        return self.event or "push"

    @property
    def pull_request(self) -> int | None:
        """The pull (or merge) request's number, for a pull request build."""
        return None if self.pull_ref is None else pull_request_number(self.pull_ref)


def pull_request_number(pull_ref: str) -> int:
    """The number in a well-formed pull request ref."""
    found = PULL_REF.fullmatch(pull_ref)
    assert found is not None, "a pull request ref that was never checked"
    return int(found.group(2))


@struct
class Spec:
    """What a build ran: its spec file (`.pbft-ci.yml` or `Dockerfile`) at the built
    commit, that file's sha256, and the image by the name the spec or the network's
    configuration gives it. A function of the commit and the configuration, so every
    honest node reports the same; the image's id is not (each node has its own copy)."""

    path: str = wire(Text(_SPEC_PATH))
    sha256: str = wire(HEX64)
    image: str = wire(Text(_IMAGE))


# A pipeline step's name (`steps:` in .pbft-ci.yml): it names the step in results, logs
# and the variables a step is given, so it is kept plain.
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_STEPS = 64
MAX_ATTEMPTS = 5  # failed attempts before a step's last: `retry:` is at most this
# "skipped": its `when: status` excluded it; "timeout": the build's deadline ended it.
STEP_STATUSES = ("success", "failure", "skipped", "timeout")


@struct
class StepResult:
    """One pipeline step's outcome on one node. Its name, status and exit code are agreed
    (compared and certified); `duration_ms` is this node's own time, and `attempts` the
    exit codes of the attempts that failed before the last (`retry:`), both signed with its
    reply so that nodes that disagree show where their time went and which step was flaky,
    never compared. A step run once has the wire form steps had before retries."""

    name: str = wire(Text(STEP_NAME))
    status: str = wire(Text(choices=STEP_STATUSES))
    exit_code: int | None = wire(Optional(ExitCode()))
    duration_ms: int = wire(Int())
    attempts: tuple[int | None, ...] = wire(ListOf(Optional(ExitCode()), MAX_ATTEMPTS), default=(), omit=(),
                                            kw_only=True)

    def agreed(self) -> dict:
        return {"name": self.name, "status": self.status, "exit_code": self.exit_code}


@dataclass(frozen=True)
class FlakyStep:
    """A step whose outcome was not one thing: it passed on some nodes and failed (or ran out of
    time) on others, or passed only on a retry somewhere. Honest nodes that ran the same
    commit in the same images should agree, so either the step depends on more than its
    inputs (a flaky test, a race, the machine) or a node lies: the nodes are named."""

    name: str
    passed_on: tuple[int, ...]
    failed_on: tuple[int, ...]
    retried_on: tuple[int, ...]  # nodes where it failed before its last attempt

    @property
    def flaky(self) -> bool:
        return bool(self.passed_on and self.failed_on) or bool(self.retried_on)

    def describe(self) -> str:
        """`step 'test' flaky: failed on node 2, passed on nodes 0, 1, 3; retried on node 1`."""
        parts = [f"{what} on {_nodes(nodes)}" for what, nodes in (
            ("failed", self.failed_on), ("passed", self.passed_on), ("retried", self.retried_on)) if nodes]
        return f"step {self.name!r} flaky: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {"step": self.name, "passed_on": list(self.passed_on), "failed_on": list(self.failed_on),
                "retried_on": list(self.retried_on)}


def flaky_steps(results: dict[int, Result]) -> tuple[FlakyStep, ...]:
    """The steps of nodes' results (`node -> result`) that were flaky, in the order the steps
    first appear."""
    outcomes: dict[str, dict[str, list[int]]] = {}  # step name, as first seen -> nodes by outcome
    for node, result in sorted(results.items()):
        for step in result.steps:
            kind = "passed" if step.status == "success" else "failed" if step.status in ("failure", "timeout") else None
            by_kind = outcomes.setdefault(step.name, {"passed": [], "failed": [], "retried": []})
            if kind is not None:
                by_kind[kind].append(node)
            if step.attempts:
                by_kind["retried"].append(node)
    found = (FlakyStep(name, tuple(by_kind["passed"]), tuple(by_kind["failed"]), tuple(by_kind["retried"]))
             for name, by_kind in outcomes.items())
    return tuple(step for step in found if step.flaky)


def _nodes(nodes: tuple[int, ...]) -> str:
    return f"node{'s' if len(nodes) > 1 else ''} {', '.join(map(str, nodes))}"


@struct
class ImageDigest:
    """An image a build ran, by the name its spec gives it, and the digest of the manifest
    the registry served for it (builder/engine/images.py): agreed, so that nodes that pulled different
    bytes under one tag disagree, each naming what it ran."""

    name: str = wire(Text(_IMAGE))
    digest: str = wire(Text(SHA256_DIGEST))


MAX_IMAGES = 80  # a pipeline's step and service images, each named once


@struct
class Result:
    """A build outcome; `agreed()` is the part every honest node computes alike.

    `spec` is there only for a build whose container ran; it is compared with
    the rest, because the verdict's attestation names it (`pbft.attestation`).
    `artifacts` only for a successful build whose spec declares artifacts: the
    digest of its manifest (`pbft.attestation.manifest_digest`), one value
    however many files, so that matching results vouch for every file's bytes
    and a vote stays small. A result without them has the wire form results
    had before they existed, so signatures made then still verify.
    """

    status: str = wire(Text(choices=STATUSES))
    exit_code: int | None = wire(Optional(ExitCode()))
    commit: str | None = wire(Optional(Text()))
    # Keyword-only (and on the wire before `reason`): subclasses (the executor's
    # BuildResult) add positional fields after `reason`.
    spec: Spec | None = wire(Optional(Struct(Spec)), default=None, omit=None, kw_only=True)
    artifacts: str | None = wire(Optional(Text(SHA256_DIGEST)), default=None, omit=None, kw_only=True)  # "sha256:<hex>"
    # A pipeline's steps, in the order they ran; () for the one-script form and for a build
    # that ended before its steps (then the wire form is that of results before steps).
    steps: tuple[StepResult, ...] = wire(
        ListOf(Struct(StepResult), MAX_STEPS), default=(), omit=(), kw_only=True
    )
    # The images it ran that came from a registry, sorted by name; () when none did.
    images: tuple[ImageDigest, ...] = wire(ListOf(Struct(ImageDigest), MAX_IMAGES), default=(), omit=(), kw_only=True)
    # A `matrix` result's combinations, in the order the spec expands them: a function of
    # the commit, agreed like the rest, so f+1 matching results certify the expansion.
    combinations: tuple[tuple[tuple[str, str], ...], ...] = wire(
        ListOf(COMBINATION, MAX_COMBINATIONS), default=(), omit=(), kw_only=True
    )
    # How the client runs a `matrix` result's combinations (the spec's `matrix:` fail_fast and
    # max_parallel): the first that does not pass cancels the others through the order; at most
    # this many at once (None: all). Agreed with the combinations.
    fail_fast: bool = wire(Bool(), default=False, omit=False, kw_only=True)
    max_parallel: int | None = wire(Optional(Int()), default=None, omit=None, kw_only=True)
    # The digest of the test outcomes this node read from the build's reports (the spec's
    # `reports:`; builder/reports/junit.py `outcomes_digest`), which it serves beside its
    # ledger entry. Each node's own, like `reason`: a test that passed here and failed there
    # leaves the verdict the agreed part's, and each node's signed reply holds it to its outcomes.
    tests: str | None = wire(Optional(Text(SHA256_DIGEST)), default=None, omit=None, kw_only=True)
    reason: str = wire(Text(), default="")

    @property
    def failed_step(self) -> StepResult | None:
        """The pipeline step that ended the build (failed, or ran out of time), from the agreed
        steps alone: what every honest node says, whatever reason text one of them sent."""
        return next((step for step in self.steps if step.status in ("failure", "timeout")), None)

    def failure_reason(self) -> str | None:
        """`step 'test' failed with exit code 1` (`timed out` for a timeout): the failing step
        of a pipeline that failed, from the agreed part; None for any other result."""
        step = self.failed_step
        if self.status not in ("failure", "timeout") or step is None:
            return None
        if step.status == "timeout":
            return f"step {step.name!r} timed out"
        return f"step {step.name!r} failed with exit code {step.exit_code}"

    def agreed(self) -> dict:
        agreed = self.to_dict()
        del agreed["reason"]
        agreed.pop("tests", None)
        if self.steps:
            agreed["steps"] = [step.agreed() for step in self.steps]
        return agreed

    def agreed_key(self) -> tuple:
        """`agreed()` as a hashable value, for counting matching results; the artifacts'
        digest last (the simulator's checkers read it there)."""
        steps = tuple((step.name, step.status, step.exit_code) for step in self.steps)
        return (
            self.status, self.exit_code, self.commit, self.spec, steps, self.images, self.combinations,
            self.fail_fast, self.max_parallel, self.artifacts,
        )
