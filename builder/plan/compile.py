"""A commit's `.pbft-ci.yml`, read for one build order: what runs (a `SpecPlan`), or why nothing
does — `Skipped` (its `when:`), `Refused` (the spec is invalid or asks for what the network does
not allow; an `error`) or `Expanded` (a matrix the order names no combination of).

Pure: the spec's bytes, the order's combination, the network's limits and the skip rules in;
a value out. The same on every honest node, because every input is agreed or in the commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from builder.plan.inputs import InputSpec, input_variables
from builder.plan.matrix import Strategy
from builder.plan.spec import BuildSpec, parse_build_spec
from builder.plan.specdocument import Read
from builder.plan.triggers import Skips
from pbft.build import Spec
from shared.config import BuildConfig

ROOT_REFUSED = "build spec asks for root; the network does not allow it"
ARTIFACTS_OFF = "build spec declares artifacts; the network keeps none (build.artifacts_mb is 0)"
# The build user's uid:gid when a spec asks for root and the network allows it.
ROOT_USER = "0:0"


@dataclass(frozen=True)
class SpecPlan:
    """A spec build as it will run: the spec, what the nodes agree it was (`ran`), its image,
    user and deadline (the spec's, capped to the network's)."""

    spec: BuildSpec
    ran: Spec
    image: str
    user: str
    timeout_s: float

    @property
    def is_pipeline(self) -> bool:
        """Steps or services: each a container of its own (builder/engine/steps.py)."""
        return bool(self.spec.steps or self.spec.services)

    @property
    def caches(self) -> bool:
        return self.spec.cache is not None

    def input_variables(self, given: tuple[tuple[str, str], ...] | None) -> dict[str, str]:
        """The spec's inputs as the build sees them (builder/plan/inputs.py); ValueError for `given`
        values the spec does not take."""
        return input_variables(self.spec.inputs, given)


@dataclass(frozen=True)
class Skipped:
    reason: str
    ran: Spec | None = None  # the spec, when it was read before the build was skipped


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class Expanded:
    """A matrix build that names no combination: nothing runs, the client asks for each. Its
    `inputs` are the spec's, checked against the request's before any combination is asked for."""

    combinations: tuple
    inputs: tuple[InputSpec, ...] = ()
    strategy: Strategy = Strategy()

    def input_variables(self, given: tuple[tuple[str, str], ...] | None) -> dict[str, str]:
        return input_variables(self.inputs, given)


def spec_identity(name: str, content: bytes, image: str) -> Spec:
    """What a build ran, as nodes agree on it and its attestation names it (pbft.build.Spec)."""
    return Spec(name, hashlib.sha256(content).hexdigest(), image)


def plan_spec(
    name: str, content: bytes, combination: tuple | None, limits: BuildConfig, decide: Skips,
    read: Read | None = None,
) -> SpecPlan | Skipped | Refused | Expanded:
    """The build of spec file `name` holding `content`, for the matrix `combination` the order
    names (None: none), under the network's `limits`; `decide` says whether it runs, `read`
    gives the files it includes."""
    try:
        spec = parse_build_spec(content, combination, read)
    except ValueError as exc:
        return Refused(str(exc))
    if spec.user == "root" and not limits.allow_root:
        return Refused(ROOT_REFUSED)
    if spec.artifacts and limits.artifacts_mb == 0:
        return Refused(ARTIFACTS_OFF)
    image = spec.image or limits.image
    ran = spec_identity(name, content, image)
    skipped = decide.of_spec(spec.when)
    if skipped is not None:
        return Skipped(skipped, ran)
    if spec.matrix and combination is None:
        return Expanded(spec.matrix, spec.inputs, spec.strategy)
    return SpecPlan(
        spec=spec, ran=ran, image=image, user=ROOT_USER if spec.user == "root" else limits.user,
        timeout_s=min(spec.timeout_s or limits.timeout_s, limits.timeout_s),
    )
