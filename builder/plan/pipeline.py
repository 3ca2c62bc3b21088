"""A pipeline's steps and environment, as `.pbft-ci.yml` declares them (builder/plan/spec.py
parses the rest of the file).

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

Steps run one at a time, in an order that honours every `depends_on` (among steps
free to run, the one declared first), so a run is the same sequence on every honest
node. A step whose `when:` excludes it is `skipped`. The build's status so far is
`failure` once a step without `failure: ignore` failed: later steps then run only if
their `when: status` names `failure`.

Parsing is pure. Every problem is reported, with the offending key, in the spec
parser's one ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pbft.build import MAX_STEPS, STEP_NAME
from builder.plan.imageref import parse_reference
from builder.plan.triggers import Condition, parse_when
from shared.config import MAX_SECRETS, SECRET_NAME

STEP_KEYS = ("name", "image", "commands", "environment", "depends_on", "failure", "when", "secrets")
SERVICE_KEYS = ("name", "image", "commands", "environment", "ready", "secrets")
READY_KEYS = ("command", "timeout_s")
MAX_SERVICES = 8
DEFAULT_READY_S = 60.0
# A service's name is its host name in the build: one DNS label, lowercase.
SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
STATUS_CHOICES = ("success", "failure")
MAX_VARIABLES = 64
MAX_VALUE_CHARS = 4096
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Names the node sets itself: the CI variables (builder/plan/civars.py), HOME (the build user's),
# and SOURCE_DATE_EPOCH (the commit's time, builder/plan/civars.py).
RESERVED_VARIABLE = re.compile(r"CI|CI_.*|HOME|SOURCE_DATE_EPOCH")


@dataclass(frozen=True)
class Step:
    name: str
    image: str | None
    commands: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()
    # The steps it follows; None: the one declared before it (none for the first).
    depends_on: tuple[str, ...] | None = None
    ignore_failure: bool = False
    status: tuple[str, ...] = ("success",)
    conditions: tuple[Condition, ...] = ()
    # The build's secrets it gets, by name; None: all of them (see `narrowed`).
    secrets: tuple[str, ...] | None = None

    def script(self) -> str:
        return "\n".join(self.commands)


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    commands: tuple[str, ...] = ()  # () runs the image's own entrypoint and command
    environment: tuple[tuple[str, str], ...] = ()
    ready_command: str | None = None
    ready_timeout_s: float = DEFAULT_READY_S
    secrets: tuple[str, ...] | None = None  # as a step's

    def script(self) -> str:
        return "\n".join(self.commands)


def narrowed(secrets: dict[str, str], names: tuple[str, ...] | None) -> dict[str, str]:
    """What of a build's `secrets` a step or service that lists `names` gets: a spec can only
    narrow what the build got, so a name the build did not get (its event's, or one the
    network does not configure) is simply absent."""
    if names is None:
        return dict(secrets)
    return {name: secrets[name] for name in names if name in secrets}


def parse_secret_names(section, where: str) -> tuple[tuple[str, ...] | None, list[str]]:
    """A step's or service's `secrets:`, the names of the build's secrets it gets, and the problems."""
    if section is None:
        return None, []
    if not isinstance(section, list) or len(section) > MAX_SECRETS:
        return None, [f"{where}: must be a list of at most {MAX_SECRETS} secret names"]
    bad = [name for name in section if not isinstance(name, str) or not SECRET_NAME.fullmatch(name)]
    if bad:
        # A list or mapping is named by its kind alone: str() would spell out every alias in
        # it, and a few hundred bytes of aliases stand for a billion items.
        shown = {list: "a list", dict: "a mapping"}.get(type(bad[0])) or repr(str(bad[0])[:40])
        return None, [f"{where}: {shown} is not a secret's name (capitals, digits and _)"]
    if len(set(section)) != len(section):
        return None, [f"{where}: names a secret twice"]
    return tuple(section), []


def parse_services(section, check_commands) -> tuple[tuple[Service, ...], list[str]]:
    """The `services:` list (or mapping of names to services), checked, and the problems."""
    return _parse_named(section, "service", MAX_SERVICES, "a name and an image", _parse_service, check_commands)


def _parse_named(section, noun: str, limit: int, needs: str, parse_one, check_commands) -> tuple[tuple, list[str]]:
    """A list of named entries (or a mapping of names to entries), each read by
    `parse_one(entry, where, check_commands)`, their names distinct; and the problems."""
    key = f"{noun}s"
    if isinstance(section, dict):
        section = [{"name": name, **entry} if isinstance(entry, dict) else entry for name, entry in section.items()]
    if not isinstance(section, list) or not section:
        return (), [f"{key}: must be a non-empty list of {key}"]
    if len(section) > limit:
        return (), [f"{key}: at most {limit} {key}"]
    parsed, errors = [], []
    for index, entry in enumerate(section):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be a mapping with {needs}")
            continue
        one, problems = parse_one(entry, where, check_commands)
        errors += problems
        if one is not None:
            if any(earlier.name == one.name for earlier in parsed):
                errors.append(f"{where}: another {noun} is named {one.name!r}")
            parsed.append(one)
    return tuple(parsed), errors


def _parse_service(entry: dict, where: str, check_commands) -> tuple[Service | None, list[str]]:
    errors = [f"{where}: unknown key {key!r}" for key in entry if key not in SERVICE_KEYS]
    name = entry.get("name")
    if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
        errors.append(f"{where}.name: must be a host name: 1 to 63 lowercase letters, digits and '-'")
    else:
        where = f"services.{name}"
    image = entry.get("image")
    errors += image_problems(image, f"{where}.image", required=True)
    commands = entry.get("commands")
    if commands is not None:
        errors += check_commands(commands, f"{where}.commands")
    environment, environment_errors = parse_environment(entry.get("environment"), f"{where}.environment")
    errors += environment_errors
    secrets, secrets_errors = parse_secret_names(entry.get("secrets"), f"{where}.secrets")
    errors += secrets_errors
    ready_command, ready_timeout_s = None, DEFAULT_READY_S
    ready = entry.get("ready")
    if ready is not None:
        if not isinstance(ready, dict):
            errors.append(f"{where}.ready: must be a mapping with a command")
        else:
            errors += [f"{where}.ready: unknown key {key!r}" for key in ready if key not in READY_KEYS]
            ready_command = ready.get("command")
            if not isinstance(ready_command, str) or not ready_command.strip() or "\0" in ready_command:
                errors.append(f"{where}.ready.command: must be a non-empty string")
            ready_timeout_s = ready.get("timeout_s", DEFAULT_READY_S)
            if isinstance(ready_timeout_s, bool) or not isinstance(ready_timeout_s, (int, float)) or not ready_timeout_s > 0:
                errors.append(f"{where}.ready.timeout_s: must be a positive number")
    if errors:
        return None, errors
    return Service(
        name=name, image=image, commands=tuple(commands or ()), environment=environment,
        ready_command=ready_command, ready_timeout_s=float(ready_timeout_s), secrets=secrets,
    ), []


def image_problems(image, where: str, *, required: bool = False) -> list[str]:
    """What is wrong with an image reference of a spec (none when it is absent and optional)."""
    if image is None and not required:
        return []
    try:
        parse_reference(image)
    except ValueError as exc:
        return [f"{where}: {exc}"]
    return []


def parse_environment(section, where: str) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """`environment:` as (name, value) pairs in the order written, and the problems.
    Values are strings; a YAML number or boolean is taken as written (`true`, `3`)."""
    if section is None:
        return (), []
    if not isinstance(section, dict):
        return (), [f"{where}: must be a mapping of names to values"]
    if len(section) > MAX_VARIABLES:
        return (), [f"{where}: at most {MAX_VARIABLES} variables"]
    pairs, errors = [], []
    for name, value in section.items():
        if not isinstance(name, str) or not _VARIABLE.fullmatch(name):
            errors.append(f"{where}: {str(name)[:40]!r} is not a variable name (letters, digits, _)")
            continue
        if RESERVED_VARIABLE.fullmatch(name):
            errors.append(f"{where}.{name}: set by the node, not by a spec")
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            errors.append(f"{where}.{name}: must be a string, a number or a boolean")
        elif "\0" in value or len(value) > MAX_VALUE_CHARS:
            errors.append(f"{where}.{name}: must be at most {MAX_VALUE_CHARS} characters, without NUL")
        else:
            pairs.append((name, value))
    return tuple(pairs), errors


def parse_steps(section, check_commands) -> tuple[tuple[Step, ...], list[str]]:
    """The `steps:` list (or mapping of names to steps), checked, and the problems.
    `check_commands(commands, where)` is the spec's own check of a command list."""
    steps, errors = _parse_named(section, "step", MAX_STEPS, "a name and commands", _parse_step, check_commands)
    if not errors:
        errors += _order_problems(list(steps))
    return steps, errors


def _parse_step(entry: dict, where: str, check_commands) -> tuple[Step | None, list[str]]:
    errors = [f"{where}: unknown key {key!r}" for key in entry if key not in STEP_KEYS]
    name = entry.get("name")
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
        errors.append(f"{where}.name: must be 1 to 64 letters, digits, '.', '_' or '-', not starting with . _ -")
    else:
        where = f"steps.{name}"
    image = entry.get("image")
    errors += image_problems(image, f"{where}.image")
    errors += check_commands(entry.get("commands"), f"{where}.commands")
    environment, environment_errors = parse_environment(entry.get("environment"), f"{where}.environment")
    errors += environment_errors
    secrets, secrets_errors = parse_secret_names(entry.get("secrets"), f"{where}.secrets")
    errors += secrets_errors
    depends_on = entry.get("depends_on")
    if depends_on is not None:
        if isinstance(depends_on, str):
            depends_on = [depends_on]
        if not isinstance(depends_on, list) or not all(isinstance(other, str) for other in depends_on):
            errors.append(f"{where}.depends_on: must be a list of step names")
            depends_on = None
    failure = entry.get("failure", "fail")
    if failure not in ("fail", "ignore"):
        errors.append(f"{where}.failure: must be 'fail' or 'ignore'")
    status, conditions, when_errors = _parse_step_when(entry.get("when"), f"{where}.when")
    errors += when_errors
    if errors:
        return None, errors
    return Step(
        name=name,
        image=image,
        commands=tuple(entry["commands"]),
        environment=environment,
        depends_on=None if depends_on is None else tuple(dict.fromkeys(depends_on)),
        ignore_failure=failure == "ignore",
        status=status,
        conditions=conditions,
        secrets=secrets,
    ), []


def _parse_step_when(section, where: str) -> tuple[tuple[str, ...], tuple[Condition, ...], list[str]]:
    if section is None:
        return ("success",), (), []
    if not isinstance(section, dict) or not section:
        return (), (), [f"{where}: must be a mapping of status, event, branch and path"]
    rest = {key: value for key, value in section.items() if key != "status"}
    status, errors = ("success",), []
    if "status" in section:
        given = section["status"]
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list) or not given or not all(value in STATUS_CHOICES for value in given):
            errors.append(f"{where}.status: must be a non-empty list of {' and '.join(STATUS_CHOICES)}")
        else:
            status = tuple(value for value in STATUS_CHOICES if value in given)
    conditions = ()
    if rest:
        conditions, when_errors = parse_when(rest)
        errors += [f"{where}{error[len('when'):]}" for error in when_errors]
    return status, conditions, errors


def dependencies(steps: tuple[Step, ...]) -> dict[str, tuple[str, ...]]:
    """Each step's name: the names of the steps it follows."""
    return {
        step.name: step.depends_on if step.depends_on is not None else ((steps[index - 1].name,) if index else ())
        for index, step in enumerate(steps)
    }


def _order_problems(steps: list[Step]) -> list[str]:
    names = {step.name for step in steps}
    errors = [
        f"steps.{step.name}.depends_on: no step is named {other!r}"
        for step in steps
        for other in step.depends_on or ()
        if other not in names
    ]
    errors += [f"steps.{step.name}.depends_on: a step cannot follow itself" for step in steps if step.name in (step.depends_on or ())]
    if not errors and len(run_order(tuple(steps))) < len(steps):
        errors.append("steps: depends_on makes a cycle")
    return errors


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
