"""A spec's `inputs:`: the values a person gives a manual run (a plain call, the dashboard's
form, `pbft-ci run --input`), as GitHub's `workflow_dispatch` inputs.

    inputs:
      target:                          # a choice: one of its options (default: the first)
        type: choice
        options: [staging, production]
      dry_run: {type: boolean, default: true}
      note: {description: "why this run"}   # a string (default: "")

A run names its values in its request, which the client signs, so the ledger, the
certificate and the attestation carry them. Every node checks them against the spec at the
commit, which they all read alike: a name the spec does not declare, a value outside a
choice's options or a boolean other than true or false makes the build an `error` with the
reason, on every node. Each declared input reaches every step, script and service as
`CI_INPUT_<NAME>` (its name in capitals): the value the run gave, else its default. A build
nobody gave inputs (a push, a schedule, a pull request) sees the defaults.

Pure, like the rest of the spec's reading.
"""

from __future__ import annotations

from typing import Iterable

from pbft.build import INPUT_NAME, INPUT_VALUE, MAX_INPUTS
from shared.schema import Choice, ListOf, Named, Section, Text, section, setting

INPUT_TYPES = ("string", "choice", "boolean")
BOOLEANS = ("true", "false")
MAX_OPTIONS = 32
MAX_DESCRIPTION_CHARS = 200
# What a build sees of an input: this prefix and the input's name in capitals.
INPUT_VARIABLE_PREFIX = "CI_INPUT_"

_VALUE = Text(INPUT_VALUE, what="a value", scalars=True,
              refusal="must be one line of at most 1024 characters, without control characters")


def _short(text: str) -> str:
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise ValueError(f"must be at most {MAX_DESCRIPTION_CHARS} characters")
    return text


def _consistent(declared: InputSpec, given: frozenset) -> Iterable[tuple[str, str]]:
    """What one type needs of the others' settings: options for a choice and only there, a
    default the input can take."""
    if declared.type == "choice":
        if not declared.options and "options" not in given:
            yield "options", "a choice needs its options"
        elif declared.default is not None and declared.options and declared.default not in declared.options:
            yield "default", f"{declared.default!r} is not one of the options"
    elif "options" in given:
        yield "options", "only a choice has options"
    if declared.type == "boolean" and declared.default is not None and declared.default not in BOOLEANS:
        yield "default", "a boolean's default is true or false"


@section(check=_consistent)
class InputSpec:
    """A value a manual run may give, which its build sees as CI_INPUT_<NAME>."""

    name: str = setting(Text(INPUT_NAME, what="an input's name",
                             refusal="must be 1 to 32 lowercase letters, digits and _, starting with a letter"),
                        doc="its name: the build sees it as CI_INPUT_ and the name in capitals")
    type: str = setting(Choice(INPUT_TYPES), default="string", doc="string, choice (one of `options`) or boolean")
    options: tuple[str, ...] = setting(
        ListOf(_VALUE, unique=True, min_items=1, max_items=MAX_OPTIONS,
               refusal="must be a non-empty list of values", too_many=f"at most {MAX_OPTIONS} options"),
        default=(), doc="a choice's values, in the order a form shows them")
    default: str | None = setting(_VALUE, default=None,
                                  doc="what a build that is not given it sees: else \"\", false or the first option")
    description: str = setting(Text(INPUT_VALUE, what="a description", check=_short,
                                    refusal=f"must be one line of at most {MAX_DESCRIPTION_CHARS} characters"),
                               default="", doc="what a form says of it")

    @property
    def variable(self) -> str:
        return INPUT_VARIABLE_PREFIX + self.name.upper()

    @property
    def fallback(self) -> str:
        if self.default is not None:
            return self.default
        return {"choice": self.options[0] if self.options else "", "boolean": "false"}.get(self.type, "")

    def problem(self, value: str) -> str | None:
        """Why `value` is not one this input takes, or None."""
        if self.type == "choice" and value not in self.options:
            return f"input {self.name}: {value!r} is not one of {', '.join(self.options)}"
        if self.type == "boolean" and value not in BOOLEANS:
            return f"input {self.name}: {value!r} is not true or false"
        return None


INPUTS = Named(Section(InputSpec, refusal="must be a mapping of an input's settings"),
               duplicate="another input is named {name!r}", min_items=1, max_items=MAX_INPUTS,
               refusal="must be a mapping of input names to their settings",
               too_many=f"at most {MAX_INPUTS} inputs")


def input_variables(declared: tuple[InputSpec, ...], given: tuple[tuple[str, str], ...] | None) -> dict[str, str]:
    """Each declared input's variable and value: `given`'s (the agreed request's), else its
    default. Raises ValueError with the reason for a name the spec does not declare, a name
    given twice or a value the input does not take; every node says the same."""
    by_name = {entry.name: entry for entry in declared}
    values: dict[str, str] = {}
    for name, value in given or ():
        entry = by_name.get(name)
        if entry is None:
            declared_names = f"its inputs are {', '.join(by_name)}" if by_name else "it declares no inputs"
            raise ValueError(f"input {name} is not declared in the spec ({declared_names})")
        if name in values:
            raise ValueError(f"input {name} is given twice")
        problem = entry.problem(value)
        if problem is not None:
            raise ValueError(problem)
        values[name] = value
    return {entry.variable: values.get(entry.name, entry.fallback) for entry in declared}
