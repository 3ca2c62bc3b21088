"""A spec's `matrix:`: one build per combination of its axes' values (Woodpecker's form).

    matrix:                       # the cartesian product, in the order written:
      PYTHON: ["3.11", "3.12"]    # PYTHON=3.11,DB=sqlite  PYTHON=3.11,DB=postgres
      DB: [sqlite, postgres]      # PYTHON=3.12,DB=sqlite  PYTHON=3.12,DB=postgres

    matrix:                       # the product but the combinations `exclude` matches:
      PYTHON: ["3.11", "3.12"]    # an entry names some axes, and every combination with
      DB: [sqlite, postgres]      # those values is left out (GitHub's rule): three builds
      exclude:
        - {PYTHON: "3.11", DB: postgres}

    matrix:                       # or the combinations themselves
      include:
        - {PYTHON: "3.11", DB: sqlite}
        - {PYTHON: "3.12", DB: postgres}

    matrix:                       # either form, and how the client runs them (GitHub's
      PYTHON: ["3.11", "3.12"]    # strategy): the first combination that does not pass
      fail_fast: true             # cancels the others, through the order; at most two
      max_parallel: 2             # run at once, the next asked for as one ends

Each axis is an environment variable of every step (and of the one script, and of the
services) of its combination's build, and `${AXIS}` in an image name (the spec's `image`,
a step's or a service's) is its value; nowhere else is anything substituted.

A push or pull request whose spec has a matrix is expanded by the nodes, not the client
(which reads no spec): the build that names no combination runs nothing and its result
lists the combinations (status `matrix`), which f+1 nodes certify like any verdict; the
client then asks for one build per combination, and a node builds a combination only if
its spec at the commit declares it. Parsing is pure; every problem is reported with its
key, in the spec parser's one ValueError.

In the schema idiom `matrix:` is a union (`Matrix`): axes, or the section `MatrixInclude`.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, Callable, Iterable

from dataclasses import dataclass

from builder.plan.specvalues import RESERVED_VARIABLE
from pbft.build import AXIS, AXIS_VALUE, MAX_AXES, MAX_COMBINATIONS, combination_label
from shared.schema import Bool, Int, Invalid, Kind, ListOf, OneOf, Reading, Section, Text, section, setting

Combination = tuple[tuple[str, str], ...]

# A combination's label ("PYTHON=3.12,DB=postgres") ends the forge's status context of its
# build, which forges show in a line and GitLab caps at 255 characters with the rest.
MAX_LABEL_CHARS = 200
_SUBSTITUTION = re.compile(r"\$\{([^}]*)\}")
_AXES_NEEDED = "a mapping of axes to lists of values, or include: a list of combinations"


def _repeats(items: tuple[tuple[int, str], ...], whole: bool) -> Iterable[tuple[str, str]]:
    seen: set[str] = set()
    for index, value in items:
        if value in seen:
            yield f"[{index}]", f"repeats {value!r}"
        seen.add(value)


# An axis's values, or a combination's: strings, or YAML numbers and booleans as written.
VALUES = ListOf(Text(AXIS_VALUE, what="an axis value", scalars=True,
                     refusal="must be 1 to 64 letters, digits and . _ : / @ + -, not starting with -"),
                min_items=1, max_items=MAX_COMBINATIONS, check=_repeats, refusal="must be a non-empty list of values",
                too_many=f"at most {MAX_COMBINATIONS} values")


def _axis_problems(name: Any, at: str, reading: Reading) -> None:
    """An axis's name is a variable's: said at the mapping when it is none, at itself when the
    node sets that variable."""
    if not isinstance(name, str) or not AXIS.fullmatch(name):
        reading.fail(at, f"{str(name)[:40]!r} is not an axis name "
                         "(1 to 32 capitals, digits and _, not starting with a digit)")
    elif RESERVED_VARIABLE.fullmatch(name):
        reading.fail(f"{at}.{name}", "set by the node, not by a spec")


# Beside a matrix's axes or its `include:`: how the client runs its combinations.
FAIL_FAST, MAX_PARALLEL = "fail_fast", "max_parallel"
_FAIL_FAST_DOC = "the first combination that does not pass cancels the others, through the order"
_MAX_PARALLEL_DOC = "at most this many combinations build at once; the next is asked for as one ends"
_STRATEGY_KINDS: dict[str, Kind] = {FAIL_FAST: Bool(), MAX_PARALLEL: Int(1, MAX_COMBINATIONS)}


@dataclass(frozen=True)
class Strategy:
    """How the client runs a matrix's combinations: all at once unless `max_parallel` says
    fewer; with `fail_fast`, the first that does not pass cancels the others."""

    fail_fast: bool = False
    max_parallel: int | None = None


def matrix_strategy(document: dict) -> Strategy:
    """The strategy a spec's `matrix:` declares, once MATRIX has read it whole."""
    matrix = document.get("matrix")
    if not isinstance(matrix, dict):
        return Strategy()
    return Strategy(fail_fast=matrix.get(FAIL_FAST, False), max_parallel=matrix.get(MAX_PARALLEL))


def _axes_json(values: dict) -> dict:
    name = {"type": "string", "pattern": f"^(?:{AXIS.pattern})$",
            "not": {"pattern": f"^(?:{RESERVED_VARIABLE.pattern})$"}}
    return {"type": "object", "minProperties": 1, "maxProperties": MAX_AXES, "propertyNames": name,
            "additionalProperties": values}


class Axes(Kind):
    """The axes of a matrix, each a name and a list of values: one combination per element of
    their product, in the order written, but those an entry of `exclude` matches. The product
    is bounded before anything is excluded: it is what the reading builds."""

    noun, blank = "a mapping of axes to lists of values", ()

    def read(self, value: dict, at: str, reading: Reading) -> Any:
        axes = {name: values for name, values in value.items() if name != EXCLUDE and name not in _STRATEGY_KINDS}
        if not axes:
            raise Invalid(f"must be {_AXES_NEEDED}")
        if len(axes) > MAX_AXES:
            raise Invalid(f"at most {MAX_AXES} axes")
        before = len(reading.problems)
        for name, kind in _STRATEGY_KINDS.items():
            if name in value:
                reading.value(kind, value[name], f"{at}.{name}")
        values_of = {}
        for name, values in axes.items():
            _axis_problems(name, at, reading)
            values_of[name] = reading.value(VALUES, values, f"{at}.{str(name)[:40]}")
        excluded = reading.value(EXCLUDES, value[EXCLUDE], f"{at}.{EXCLUDE}") if EXCLUDE in value else ()
        if len(reading.problems) > before:
            return reading.REFUSED
        count = math.prod(len(values) for values in values_of.values())
        if count > MAX_COMBINATIONS:
            raise Invalid(f"{count} combinations, at most {MAX_COMBINATIONS}")
        for index, entry in enumerate(excluded):
            for name, chosen in entry:
                if name not in values_of:
                    reading.fail(f"{at}.{EXCLUDE}[{index}]", f"{name} is not an axis of the matrix")
                elif chosen not in values_of[name]:
                    reading.fail(f"{at}.{EXCLUDE}[{index}].{name}", f"{chosen!r} is not one of {name}'s values")
        if len(reading.problems) > before:
            return reading.REFUSED
        names = list(values_of)
        product = (tuple(zip(names, chosen)) for chosen in itertools.product(*values_of.values()))
        combinations = tuple(
            combination for combination in product if not any(set(entry) <= set(combination) for entry in excluded)
        )
        if not combinations:
            raise Invalid(f"{EXCLUDE} leaves no combination")
        return combinations

    def nested(self) -> tuple[tuple[Kind, str], ...]:
        return ((VALUES, ".*"),)

    def json(self, defs: dict) -> dict:
        # `exclude` beside the axes: a name no axis can have (axes are capitals); so are the
        # strategy's, each with its own kind.
        declared = _axes_json({"anyOf": [VALUES.json(defs), EXCLUDES.json(defs)]})
        declared["properties"] = {name: kind.json(defs) for name, kind in _STRATEGY_KINDS.items()}
        declared["propertyNames"] = {"anyOf": [declared["propertyNames"], {"enum": [EXCLUDE, *_STRATEGY_KINDS]}]}
        declared["maxProperties"] = MAX_AXES + 1 + len(_STRATEGY_KINDS)
        return declared

    def text(self, link: Callable[[type], str]) -> str:
        return (f"mapping of up to {MAX_AXES} axes (capitals, digits, _) to lists of values; `{EXCLUDE}`: "
                "a list of mappings of some axes to values, each leaving out every combination it matches; "
                f"`{FAIL_FAST}` (boolean): {_FAIL_FAST_DOC}; `{MAX_PARALLEL}` (integer, 1 to {MAX_COMBINATIONS}): "
                f"{_MAX_PARALLEL_DOC}")


# Beside a matrix's axes: the combinations to leave out, each named by some of its axes.
EXCLUDE = "exclude"


class CombinationKind(Kind):
    """One combination of `include:`, its axes' names to their values."""

    noun, blank, refusal = "a mapping of axes to values", None, "must be a mapping of axes to values"

    def read(self, value: Any, at: str, reading: Reading) -> Any:
        if not isinstance(value, dict) or not value:
            raise self.expected(value)
        if len(value) > MAX_AXES:
            raise Invalid(f"at most {MAX_AXES} axes")
        before = len(reading.problems)
        for name in value:
            _axis_problems(name, at, reading)
        values = reading.value(VALUES, list(value.values()), at)
        if len(reading.problems) > before:
            return reading.REFUSED
        return tuple(zip(value, values))

    def json(self, defs: dict) -> dict:
        return _axes_json(VALUES.item.json(defs))

    def text(self, link: Callable[[type], str]) -> str:
        return f"mapping of up to {MAX_AXES} axes to values"


EXCLUDES = ListOf(CombinationKind(), min_items=1, max_items=MAX_COMBINATIONS,
                  refusal="must be a non-empty list of mappings of axes to values",
                  too_many=f"at most {MAX_COMBINATIONS} entries")


@section
class MatrixInclude:
    """The combinations of a matrix, listed one by one in place of axes."""

    include: tuple[Combination, ...] = setting(
        ListOf(CombinationKind(), min_items=1, max_items=MAX_COMBINATIONS,
               refusal="must be a non-empty list of combinations (mappings of axes to values)",
               too_many=f"at most {MAX_COMBINATIONS} combinations"),
        doc="the combinations, each a mapping of axes to values")
    fail_fast: bool = setting(_STRATEGY_KINDS[FAIL_FAST], default=False, doc=_FAIL_FAST_DOC)
    max_parallel: int | None = setting(_STRATEGY_KINDS[MAX_PARALLEL], default=None, doc=_MAX_PARALLEL_DOC)


_AXES, _INCLUDE = Axes(), Section(MatrixInclude)


def _form(value: Any) -> Kind:
    if not isinstance(value, dict) or not value:
        raise Invalid(f"must be {_AXES_NEEDED}")
    if "include" not in value:
        return _AXES
    if set(value) - {"include", *_STRATEGY_KINDS}:
        raise Invalid("include lists whole combinations; no axes beside it")
    return _INCLUDE


class Matrix(OneOf):
    """`matrix:`, axes or `include:`, read into the combinations it declares, in order; each
    distinct, and with a label a forge's status context can hold."""

    blank = ()

    def __init__(self) -> None:
        super().__init__(_AXES, _INCLUDE, pick=_form, noun=_AXES_NEEDED)

    def read(self, value: Any, at: str, reading: Reading) -> Any:
        before = len(reading.problems)
        declared = super().read(value, at, reading)
        if declared is reading.REFUSED or len(reading.problems) > before:
            return reading.REFUSED
        combinations = declared.include if isinstance(declared, MatrixInclude) else declared
        for index, combination in enumerate(combinations):
            label = combination_label(combination)
            # The same axes and values in another order would be the same build under two names.
            if any(dict(combination) == dict(earlier) for earlier in combinations[:index]):
                reading.fail(at, f"{label} is declared twice")
            elif len(label) > MAX_LABEL_CHARS:
                reading.fail(at, f"{label[:40]}... is longer than {MAX_LABEL_CHARS} characters")
        return reading.REFUSED if len(reading.problems) > before else combinations


MATRIX = Matrix()


def with_images(document: dict, combination: Combination) -> tuple[dict, list[str]]:
    """The spec's document with `${AXIS}` in its images replaced by the combination's values,
    and the problems: a `${...}` that names none of its axes."""
    values = dict(combination)
    errors: list[str] = []

    def substituted(image, where: str):
        if not isinstance(image, str):
            return image  # the spec's parser says what is wrong with it

        def value(found: re.Match) -> str:
            if found.group(1) in values:
                return values[found.group(1)]
            errors.append(f"{where}: ${{{found.group(1)[:40]}}} names no axis of {'the' if values else 'a'} matrix")
            return found.group(0)

        return _SUBSTITUTION.sub(value, image)

    document = dict(document)
    if "image" in document:
        document["image"] = substituted(document["image"], "image")
    for key in ("steps", "services"):
        if key in document:
            document[key] = _with_entry_images(document[key], key, substituted)
    return document, errors


def _with_entry_images(section, key: str, substituted):
    """A `steps:` or `services:` section (a list, or a mapping of names) with its images substituted."""
    if isinstance(section, list):
        return [
            {**entry, "image": substituted(entry["image"], f"{key}[{index}].image")}
            if isinstance(entry, dict) and "image" in entry else entry
            for index, entry in enumerate(section)
        ]
    if isinstance(section, dict):
        return {
            name: {**entry, "image": substituted(entry["image"], f"{key}.{name}.image")}
            if isinstance(entry, dict) and "image" in entry else entry
            for name, entry in section.items()
        }
    return section


def check_combination(combination) -> None:
    """Raise ValueError unless `combination` is well formed: distinct axes, plain values."""
    if not isinstance(combination, tuple) or not 1 <= len(combination) <= MAX_AXES:
        raise ValueError(f"a matrix combination must name 1 to {MAX_AXES} axes")
    for pair in combination:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
                and AXIS.fullmatch(pair[0]) and AXIS_VALUE.fullmatch(pair[1])):
            raise ValueError("a matrix combination's axes and values must be plain names and values")
    if len({axis for axis, _ in combination}) < len(combination):
        raise ValueError("a matrix combination names an axis twice")
