"""A spec's `matrix:`: one build per combination of its axes' values (Woodpecker's form).

    matrix:                       # the cartesian product, in the order written:
      PYTHON: ["3.11", "3.12"]    # PYTHON=3.11,DB=sqlite  PYTHON=3.11,DB=postgres
      DB: [sqlite, postgres]      # PYTHON=3.12,DB=sqlite  PYTHON=3.12,DB=postgres

    matrix:                       # or the combinations themselves
      include:
        - {PYTHON: "3.11", DB: sqlite}
        - {PYTHON: "3.12", DB: postgres}

Each axis is an environment variable of every step (and of the one script, and of the
services) of its combination's build, and `${AXIS}` in an image name (the spec's `image`,
a step's or a service's) is its value; nowhere else is anything substituted.

A push or pull request whose spec has a matrix is expanded by the nodes, not the client
(which reads no spec): the build that names no combination runs nothing and its result
lists the combinations (status `matrix`), which f+1 nodes certify like any verdict; the
client then asks for one build per combination, and a node builds a combination only if
its spec at the commit declares it. Parsing is pure; every problem is reported with its
key, in the spec parser's one ValueError.
"""

from __future__ import annotations

import itertools
import math
import re

from pbft.build import AXIS, AXIS_VALUE, MAX_AXES, MAX_COMBINATIONS, combination_label
from builder.plan.pipeline import RESERVED_VARIABLE

Combination = tuple[tuple[str, str], ...]

# A combination's label ("PYTHON=3.12,DB=postgres") ends the forge's status context of its
# build, which forges show in a line and GitLab caps at 255 characters with the rest.
MAX_LABEL_CHARS = 200
_SUBSTITUTION = re.compile(r"\$\{([^}]*)\}")
_AXES_NEEDED = "a mapping of axes to lists of values, or include: a list of combinations"


def parse_matrix(section) -> tuple[tuple[Combination, ...], list[str]]:
    """The combinations `matrix:` declares, in order, and the problems; () without one."""
    if section is None:
        return (), []
    if not isinstance(section, dict) or not section:
        return (), [f"matrix: must be {_AXES_NEEDED}"]
    if "include" in section:
        if len(section) > 1:
            return (), ["matrix: include lists whole combinations; no axes beside it"]
        combinations, errors = _included(section["include"])
    else:
        combinations, errors = _product(section)
    if errors:
        return (), errors
    for index, combination in enumerate(combinations):
        label = combination_label(combination)
        # The same axes and values in another order would be the same build under two names.
        if any(dict(combination) == dict(earlier) for earlier in combinations[:index]):
            errors.append(f"matrix: {label} is declared twice")
        elif len(label) > MAX_LABEL_CHARS:
            errors.append(f"matrix: {label[:40]}... is longer than {MAX_LABEL_CHARS} characters")
    return (() if errors else tuple(combinations)), errors


def _product(axes: dict) -> tuple[list[Combination], list[str]]:
    if len(axes) > MAX_AXES:
        return [], [f"matrix: at most {MAX_AXES} axes"]
    values_of, errors = {}, []
    for name, values in axes.items():
        errors += _axis_problems(name, "matrix")
        if not isinstance(values, list) or not values:
            errors.append(f"matrix.{str(name)[:40]}: must be a non-empty list of values")
            continue
        if len(values) > MAX_COMBINATIONS:  # before each value is compared with those before it
            errors.append(f"matrix.{str(name)[:40]}: at most {MAX_COMBINATIONS} values")
            continue
        values_of[name], value_errors = _values(values, f"matrix.{str(name)[:40]}")
        errors += value_errors
    if errors:
        return [], errors
    count = math.prod(len(values) for values in values_of.values())
    if count > MAX_COMBINATIONS:
        return [], [f"matrix: {count} combinations, at most {MAX_COMBINATIONS}"]
    names = list(values_of)
    return [tuple(zip(names, chosen)) for chosen in itertools.product(*values_of.values())], []


def _included(entries) -> tuple[list[Combination], list[str]]:
    if not isinstance(entries, list) or not entries:
        return [], ["matrix.include: must be a non-empty list of combinations (mappings of axes to values)"]
    if len(entries) > MAX_COMBINATIONS:
        return [], [f"matrix.include: at most {MAX_COMBINATIONS} combinations"]
    combinations, errors = [], []
    for index, entry in enumerate(entries):
        where = f"matrix.include[{index}]"
        if not isinstance(entry, dict) or not entry:
            errors.append(f"{where}: must be a mapping of axes to values")
            continue
        if len(entry) > MAX_AXES:
            errors.append(f"{where}: at most {MAX_AXES} axes")
            continue
        problems = [problem for name in entry for problem in _axis_problems(name, where)]
        values, value_errors = _values(list(entry.values()), where)
        errors += problems + value_errors
        if not problems and not value_errors:
            combinations.append(tuple(zip(entry, values)))
    return combinations, errors


def _axis_problems(name, where: str) -> list[str]:
    if not isinstance(name, str) or not AXIS.fullmatch(name):
        return [f"{where}: {str(name)[:40]!r} is not an axis name "
                "(1 to 32 capitals, digits and _, not starting with a digit)"]
    if RESERVED_VARIABLE.fullmatch(name):
        return [f"{where}.{name}: set by the node, not by a spec"]
    return []


def _values(values: list, where: str) -> tuple[list[str], list[str]]:
    """The values as strings (a YAML number or boolean as written), and the problems."""
    strings, errors = [], []
    for index, value in enumerate(values):
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str) or not AXIS_VALUE.fullmatch(value):
            errors.append(
                f"{where}[{index}]: must be 1 to 64 letters, digits and . _ : / @ + -, not starting with -"
            )
        elif value in strings:
            errors.append(f"{where}[{index}]: repeats {value!r}")
        else:
            strings.append(value)
    return strings, errors


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
