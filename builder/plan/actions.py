"""Actions after the verdict: the spec's `after:` section.

    after:
      - name: deploy                    # names the action in records, logs and the dashboard
        image: pbft-ci/busybox:latest   # optional: the runner's default image
        commands: ["./deploy.sh"]
        when: {event: push, branch: master}   # event and branch conditions, as a build's `when:`
        status: [success]               # the verdicts it runs for (default: success)
        secrets: [DEPLOY_TOKEN]         # the runner's secrets it gets as environment variables

Nodes never run an action: they check the section with the rest of the spec
(a malformed one makes the build an `error`, the same on every node) and
agree on the spec's sha256. The action runner (runner/) runs it once, after
the verdict is certified, from the spec file whose sha256 the certificate
names, so it runs exactly what the nodes agreed was in the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.plan.pipeline import image_problems
from builder.plan.triggers import Condition, parse_when
from pbft.build import STATUSES, STEP_NAME

MAX_ACTIONS = 16
ACTION_NAME = STEP_NAME  # plain, as a step's: it names the action in records, logs and URLs
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_KEYS = ("name", "image", "commands", "when", "status", "secrets")
# A verdict an action may follow: a certified build's status (a matrix's expansion runs nothing).
_VERDICTS = tuple(status for status in STATUSES if status != "matrix")


@dataclass(frozen=True)
class ActionSpec:
    name: str
    commands: tuple[str, ...]
    image: str | None = None
    conditions: tuple[Condition, ...] = ()
    statuses: tuple[str, ...] = ("success",)
    secrets: tuple[str, ...] = ()

    def refusal(self, event: str, branch: str, status: str) -> str | None:
        """Why this action does not run for a verdict `status` of a build started by `event`
        on `branch`, or None when it runs."""
        if status not in self.statuses:
            return f"verdict {status} is not {' or '.join(self.statuses)}"
        refusals = [condition.refusal(event, branch, None) for condition in self.conditions]
        if refusals and all(refusal is not None for refusal in refusals):
            return "when: " + "; ".join(refusals)
        return None


def parse_actions(section, command_problems) -> tuple[tuple[ActionSpec, ...], list[str]]:
    """The `after:` actions and the problems with them. `command_problems` checks a commands
    list as the spec's own (builder/plan/spec.py)."""
    if section is None:
        return (), []
    if not isinstance(section, list) or not 1 <= len(section) <= MAX_ACTIONS:
        return (), [f"after: must be a list of 1 to {MAX_ACTIONS} actions"]
    actions, errors, names = [], [], set()
    for index, item in enumerate(section):
        where = f"after[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{where}: must be a mapping with name and commands")
            continue
        errors += [f"{where}: unknown key {key!r}" for key in item if key not in _KEYS]
        name = item.get("name")
        if not isinstance(name, str) or not ACTION_NAME.fullmatch(name):
            errors.append(f"{where}.name: must be 1 to 64 letters, digits, '.', '_' or '-'")
        elif name in names:
            errors.append(f"{where}.name: {name!r} names two actions")
        names.add(name)
        errors += command_problems(item.get("commands"), f"{where}.commands")
        errors += image_problems(item.get("image"), f"{where}.image")
        conditions, when_errors = parse_when(item.get("when"))
        errors += [f"{where}.{error}" for error in when_errors]
        if any(condition.path is not None for condition in conditions):
            # The runner sees the certified request, not the paths a push changed.
            errors.append(f"{where}.when: path conditions are for builds; an action has event and branch")
        statuses = item.get("status", ["success"])
        statuses = [statuses] if isinstance(statuses, str) else statuses
        if not isinstance(statuses, list) or not statuses or any(status not in _VERDICTS for status in statuses):
            errors.append(f"{where}.status: must be one or more of {', '.join(_VERDICTS)}")
        secrets = item.get("secrets", [])
        if not isinstance(secrets, list) or any(not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret)
                                                for secret in secrets):
            errors.append(f"{where}.secrets: must be a list of variable names (A-Z, 0-9, _)")
        if not errors:
            actions.append(ActionSpec(name, tuple(item["commands"]), item.get("image"), conditions,
                                      tuple(statuses), tuple(secrets)))
    return (tuple(actions), []) if not errors else ((), errors)
