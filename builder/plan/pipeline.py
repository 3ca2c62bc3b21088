"""A pipeline's steps and services, as `.pbft-ci.yml` declares them: sections of the schema
idiom (shared/schema), read with the rest of the file (builder/plan/spec.py).

    environment:                  # optional: every step gets these
      PGHOST: postgres
    steps:
      - name: lint                # required, unique: letters, digits, . _ -
        image: python:3.12-slim   # optional, the spec's `image` (or the node's) otherwise
        commands: [ruff check .]  # required, run by `sh -e` in /workspace
        environment: {A: "1"}     # optional, on top of the pipeline's
        secrets: []               # optional: only these of the build's secrets (docs/secrets.md); all otherwise
      - name: test
        commands: [pytest]
        depends_on: [lint]        # optional: the steps it follows; the step before it otherwise
        failure: ignore           # optional: its failure does not fail the build
        retry: 2                  # optional: run it again after a failure, up to this many times
        timeout_s: 300            # optional: each attempt's time; past it the step ends `timeout`
        extends: x-python         # optional: templates its keys go on top of (builder/plan/templates.py)
        when:                     # optional: run only if the build's status so far is one of
          status: [success]       # these (default [success]); event, branch and path as in
          event: [push]           # the spec's own `when:` (builder/plan/triggers.py)

    services:                     # optional: started before the first step, removed with the build
      - name: postgres            # required, unique: also its host name for the steps
        image: postgres-image     # required
        commands: [...]           # optional: run by `sh -e`; the image's own command otherwise
        environment: {...}        # optional
        secrets: [DB_PASSWORD]    # optional, as a step's
        ready:                    # optional: the first step waits until this exits 0 in it
          command: pg_isready -h 127.0.0.1
          timeout_s: 60           # default 60

A step starts once every step it follows has ended, so steps that do not follow each
other run at once (builder/plan/stepgraph.py). A step whose `when:` excludes it is
`skipped`. The status so far a step sees is `failure` once a step it follows, directly
or through others, failed without `failure: ignore`: it then runs only if its `when:
status` names `failure`. A failed step with `retry: N` runs again, up to N more times,
in the same workspace; every honest node applies that one rule, and the attempts that
failed are in the log and the step's signed result (not compared: a step that passes
on a retry on one node and at once on another agrees). A step over its own `timeout_s`
ends `timeout` and is not run again; the steps after it see `failure`, as after a failed
step, and the build fails naming it unless the step has `failure: ignore`. The build's
`timeout_s` bounds every step's.

Parsing is pure. Every problem is reported, with the offending key, in the spec
parser's one ValueError.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

from builder.plan.specvalues import COMMANDS, IMAGE, SecretNames, Variables, Words
from builder.plan.stepgraph import StepGraph
from builder.plan.triggers import Condition
from pbft.build import MAX_ATTEMPTS as MAX_RETRIES, MAX_STEPS, STEP_NAME
from shared.schema import Choice, Inline, Int, Named, Number, Section, Text, section, setting

MAX_SERVICES = 8
DEFAULT_READY_S = 60.0
# A service's name is its host name in the build: one DNS label, lowercase.
SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
STATUS_CHOICES = ("success", "failure")
# `extends:` of a step or a service, applied before the spec is read (builder/plan/templates.py).
EXTENDED = Words(None, "must be a template's name or a list of them", single=True, min_items=1)
EXTENDED_DOC = ("templates (top-level `x-` keys) its keys go on top of, in order: mappings merge key by key, "
                "anything else replaces")


@section
class StepWhen:
    """A step's `when:`: the build statuses so far it runs after, and the trigger's conditions."""

    status: tuple[str, ...] = setting(
        Words(STATUS_CHOICES, f"must be a non-empty list of {' and '.join(STATUS_CHOICES)}", single=True,
              min_items=1, keep="choices"),
        default=("success",), nullable=False, doc="the build statuses so far the step runs after")
    condition: Condition | None = setting(Inline(Condition, ""), default=None,
                                          doc="event, branch and path, as in the spec's own `when:`")


@section
class Step:
    """A step of a pipeline: one `sh -e` script in a container of its own, in the shared /workspace."""

    name: str = setting(Text(STEP_NAME, what="a step name",
                             refusal="must be 1 to 64 letters, digits, '.', '_' or '-', not starting with . _ -"),
                        doc="unique: 1 to 64 letters, digits, `.`, `_`, `-`, not starting with `.`, `_` or `-`")
    # Keyword-only from here: the document's order has the required `commands` after `image`.
    _: dataclasses.KW_ONLY
    image: str | None = setting(IMAGE, default=None, doc="the step's image; the spec's `image` otherwise")
    commands: tuple[str, ...] = setting(COMMANDS, doc="one `sh -e` script, one line per entry, run in /workspace "
                                                      "in place of the image's entrypoint")
    environment: tuple[tuple[str, str], ...] = setting(Variables(), default=(),
                                                       doc="variables of this step, on top of the pipeline's")
    # The build's secrets it gets, by name; None: all of them (see `narrowed`).
    secrets: tuple[str, ...] | None = setting(SecretNames(), default=None,
                                              doc="the build's secrets it gets (`[]`: none); all of them otherwise")
    # The steps it follows; None: the one declared before it (none for the first).
    depends_on: tuple[str, ...] | None = setting(
        Words(None, "must be a list of step names", single=True, keep="distinct"), default=None,
        doc="the steps it follows; the one declared before it otherwise (`[]`: none)")
    ignore_failure: bool = setting(
        Choice(("fail", "ignore"), means={"fail": False, "ignore": True}, refusal="must be 'fail' or 'ignore'"),
        key="failure", default=False, nullable=False, doc="`ignore`: its failure does not fail the build")
    retry: int = setting(Int(0, MAX_RETRIES), default=0, nullable=False,
                         doc=f"how many times a failed step runs again (at most {MAX_RETRIES}); each attempt is in the log")
    timeout_s: float | None = setting(
        Number(above=0, refusal="must be a positive number"), default=None,
        doc="how long each attempt may run: past it the step ends `timeout`, is not run again and counts as "
            "failed, and the build goes on as after a failure; never past the build's own `timeout_s`")
    when: StepWhen = setting(Section(StepWhen, refusal="must be a mapping of status, event, branch and path",
                                     nonempty=True),
                             default=StepWhen(), doc="whether it runs: the build's status so far, and the trigger")
    extends: tuple[str, ...] = setting(EXTENDED, default=(), doc=EXTENDED_DOC)

    @property
    def status(self) -> tuple[str, ...]:
        return self.when.status

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return () if self.when.condition is None else (self.when.condition,)

    def script(self) -> str:
        return "\n".join(self.commands)


def _one_line(text: str) -> str:
    if not text.strip() or "\0" in text:
        raise ValueError("must be a non-empty string")
    return text


@section
class Ready:
    """How a service says it is ready: a command run in it until it exits 0."""

    command: str = setting(Text(what="a command", check=_one_line, refusal="must be a non-empty string"),
                           doc="run in the service every half second until it exits 0; the steps start then")
    timeout_s: float = setting(Number(above=0, refusal="must be a positive number"), default=DEFAULT_READY_S,
                               nullable=False, doc="how long to wait for it (never past the build's deadline)")


@section
class Service:
    """A container next to the steps, reached by its name: a database, a cache, a server."""

    name: str = setting(Text(SERVICE_NAME, what="a host name",
                             refusal="must be a host name: 1 to 63 lowercase letters, digits and '-'"),
                        doc="unique: its host name in the build (1 to 63 lowercase letters, digits and `-`)")
    image: str = setting(IMAGE, doc="the service's image")
    commands: tuple[str, ...] = setting(COMMANDS, default=(),
                                        doc="run by `sh -e` in place of the image's entrypoint and command")
    environment: tuple[tuple[str, str], ...] = setting(Variables(), default=(),
                                                       doc="the service's variables, on top of the pipeline's")
    secrets: tuple[str, ...] | None = setting(SecretNames(), default=None,
                                              doc="as a step's: the build's secrets it gets, all of them otherwise")
    ready: Ready | None = setting(Section(Ready, refusal="must be a mapping with a command"), default=None,
                                  doc="the first step waits until the service is ready")
    extends: tuple[str, ...] = setting(EXTENDED, default=(), doc=EXTENDED_DOC)

    @property
    def ready_command(self) -> str | None:
        return None if self.ready is None else self.ready.command

    @property
    def ready_timeout_s(self) -> float:
        return DEFAULT_READY_S if self.ready is None else self.ready.timeout_s

    def script(self) -> str:
        return "\n".join(self.commands)


def narrowed(secrets: tuple[str, ...], names: tuple[str, ...] | None) -> tuple[str, ...]:
    """Which of a build's `secrets` (their names) a step or service that lists `names` gets: a
    spec can only narrow what the build got, so a name the build did not get (its event's, or
    one the network does not configure) is simply absent."""
    if names is None:
        return secrets
    return tuple(name for name in names if name in secrets)


def _order(items: tuple[tuple[int, Step], ...], whole: bool) -> Iterable[tuple[str, str]]:
    """`depends_on` names steps there are, not the step itself, and makes no cycle; looked at
    once every step reads whole."""
    if not whole:
        return
    steps = tuple(step for _, step in items)
    names = {step.name for step in steps}
    unknown = [(step.name, other) for step in steps for other in step.depends_on or () if other not in names]
    itself = [step.name for step in steps if step.name in (step.depends_on or ())]
    for name, other in unknown:
        yield f".{name}.depends_on", f"no step is named {other!r}"
    for name in itself:
        yield f".{name}.depends_on", "a step cannot follow itself"
    if not unknown and not itself and len(run_order(steps)) < len(steps):
        yield "", "depends_on makes a cycle"


# `steps:` and `services:`, each a list or a mapping of names to entries.
STEPS = Named(Section(Step, refusal="must be a mapping with a name and commands"),
              duplicate="another step is named {name!r}", check=_order, min_items=1, max_items=MAX_STEPS,
              refusal="must be a non-empty list of steps", too_many=f"at most {MAX_STEPS} steps")
SERVICES = Named(Section(Service, refusal="must be a mapping with a name and an image"),
                 duplicate="another service is named {name!r}", min_items=1, max_items=MAX_SERVICES,
                 refusal="must be a non-empty list of services", too_many=f"at most {MAX_SERVICES} services")


def dependencies(steps: tuple[Step, ...]) -> dict[str, tuple[str, ...]]:
    """Each step's name: the names of the steps it follows."""
    return {
        step.name: step.depends_on if step.depends_on is not None else ((steps[index - 1].name,) if index else ())
        for index, step in enumerate(steps)
    }


def step_graph(steps: tuple[Step, ...]) -> StepGraph:
    """The graph the steps' `depends_on` make, for the schedule that runs them."""
    return StepGraph(tuple(step.name for step in run_order(steps)), dependencies(steps))


def run_order(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The steps in the order they run: each after every step it follows; among those free
    to run, the one declared first. Steps in a cycle are left out (the parser refuses them)."""
    follows = dependencies(steps)
    done: set[str] = set()
    order: list[Step] = []
    while len(order) < len(steps):
        ready = next((step for step in steps if step.name not in done and set(follows[step.name]) <= done), None)
        if ready is None:
            break
        done.add(ready.name)
        order.append(ready)
    return tuple(order)
