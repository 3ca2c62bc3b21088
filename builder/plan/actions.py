"""Actions after the verdict: the spec's `after:` section.

    after:
      - name: deploy                    # names the action in records, logs and the dashboard
        image: pbft-ci/busybox:latest   # optional: the runner's default image
        commands: ["./deploy.sh"]
        when: {event: push, branch: master}   # event and branch conditions, as a build's `when:`
        status: [success]               # the verdicts it runs for (default: success)
        secrets: [DEPLOY_TOKEN]         # the runner's secrets it gets as environment variables
        environment: production         # optional: a deploy environment of the network document

Nodes never run an action: they check the section with the rest of the spec
(a malformed one makes the build an `error`, the same on every node) and
agree on the spec's sha256. The action runner (runner/) runs it once, after
the verdict is certified, from the spec file whose sha256 the certificate
names, so it runs exactly what the nodes agreed was in the spec. An action
that names an environment whose approval is required (the network document's
`environments:`) waits until a person with the environment's role approves
it through the order (runner/approvals.py).
"""

from __future__ import annotations

import re
from typing import Iterable

from builder.plan.specvalues import COMMANDS, IMAGE, Words, spec_reading
from builder.plan.triggers import WHEN, Condition
from pbft.build import STATUSES, STEP_NAME
from shared.schema import ListOf, Section, Text, section, setting

MAX_ACTIONS = 16
ACTION_NAME = STEP_NAME  # plain, as a step's: it names the action in records, logs and URLs
ENVIRONMENT_NAME = STEP_NAME  # as the network document's `environments:` names one (shared/config_environments.py)
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# A verdict an action may follow: a certified build's status (a matrix's expansion runs nothing).
_VERDICTS = tuple(status for status in STATUSES if status != "matrix")


def _event_and_branch(action: ActionSpec, given: frozenset) -> Iterable[tuple[str, str]]:
    if any(condition.path is not None for condition in action.conditions):
        # The runner sees the certified request, not the paths a push changed.
        yield "conditions", "path conditions are for builds; an action has event and branch"


@section(check=_event_and_branch)
class ActionSpec:
    """An action: run once, on the action runner, after the build's verdict is certified."""

    name: str = setting(Text(ACTION_NAME, what="an action name",
                             refusal="must be 1 to 64 letters, digits, '.', '_' or '-'"),
                        doc="unique: names the action in records, logs and the dashboard")
    commands: tuple[str, ...] = setting(COMMANDS, doc="one `sh -e` script, one line per entry")
    image: str | None = setting(IMAGE, default=None, doc="the image it runs in; the runner's `image` otherwise")
    conditions: tuple[Condition, ...] = setting(WHEN, key="when", default=(),
                                                doc="event and branch conditions, as a build's `when:` (no path)")
    statuses: tuple[str, ...] = setting(
        Words(_VERDICTS, f"must be one or more of {', '.join(_VERDICTS)}", single=True, min_items=1),
        key="status", default=("success",), nullable=False, doc="the verdicts it runs for")
    secrets: tuple[str, ...] = setting(Words(SECRET_NAME, "must be a list of variable names (A-Z, 0-9, _)"),
                                       default=(), nullable=False,
                                       doc="the runner's secrets it gets, as environment variables")
    environment: str | None = setting(
        Text(ENVIRONMENT_NAME, what="an environment name", refusal="must be 1 to 64 letters, digits, '.', '_' or '-'"),
        default=None, doc="the deploy environment it deploys to, of the network document's `environments:`; one "
                          "that requires approval runs only once a person with its role approved it")

    def refusal(self, event: str, branch: str, status: str) -> str | None:
        """Why this action does not run for a verdict `status` of a build started by `event`
        on `branch`, or None when it runs."""
        if status not in self.statuses:
            return f"verdict {status} is not {' or '.join(self.statuses)}"
        refusals = [condition.refusal(event, branch, None) for condition in self.conditions]
        if refusals and all(refusal is not None for refusal in refusals):
            return "when: " + "; ".join(refusals)
        return None


def _names_once(items: tuple[tuple[int, ActionSpec], ...], whole: bool) -> Iterable[tuple[str, str]]:
    """Each name once: a name an earlier action has is said at the later one. A name left
    empty (a refused one read as "") is another problem, already said."""
    names: set[str] = set()
    for index, action in items:
        if action.name and action.name in names:
            yield f"[{index}].name", f"{action.name!r} names two actions"
        names.add(action.name)


# `after:`, the actions of a spec.
AFTER = ListOf(Section(ActionSpec, refusal="must be a mapping with name and commands"), min_items=1,
               max_items=MAX_ACTIONS, check=_names_once, refusal=f"must be a list of 1 to {MAX_ACTIONS} actions")


def parse_actions(section) -> tuple[tuple[ActionSpec, ...], list[str]]:
    """The `after:` actions and the problems with them."""
    if section is None:
        return (), []
    reading = spec_reading()
    actions = reading.value(AFTER, section, "after")
    return ((), reading.problems) if reading.problems else (actions, [])
