"""A check of a document against a JSON Schema, for the keywords shared/schema writes: the
tests hold the generated schema against the configurations the loader reads without
depending on a validator package. A keyword it does not know fails loudly, so the schema
cannot grow a rule this check silently ignores."""

from __future__ import annotations

import re
from typing import Any, Callable

_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "default"}
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: type(value) is int,
    "number": lambda value: type(value) in (int, float),
    "null": lambda value: value is None,
}


def schema_problems(schema: dict, value: Any, root: dict | None = None, at: str = "") -> list[str]:
    """What `value` breaks of `schema`, each with its path; [] when it conforms."""
    root = schema if root is None else root
    found = []
    for keyword, argument in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        assert keyword in _KEYWORDS, f"JSON Schema keyword {keyword!r} is not checked here"
        found += _KEYWORDS[keyword](argument, value, schema, root, at)
    return found


def _ref(argument, value, schema, root, at):
    assert argument.startswith("#/$defs/"), argument
    return schema_problems(root["$defs"][argument.removeprefix("#/$defs/")], value, root, at)


def _type(argument, value, schema, root, at):
    return [] if _TYPES[argument](value) else [f"{at}: not {argument}"]


def _enum(argument, value, schema, root, at):
    return [] if value in argument else [f"{at}: not one of {argument}"]


def _number(compare: Callable[[Any, Any], bool], words: str):
    def check(argument, value, schema, root, at):
        if type(value) not in (int, float) or compare(value, argument):
            return []
        return [f"{at}: {words} {argument}"]

    return check


def _min_length(argument, value, schema, root, at):
    return [] if not isinstance(value, str) or len(value) >= argument else [f"{at}: shorter than {argument}"]


def _pattern(argument, value, schema, root, at):
    return [] if not isinstance(value, str) or re.search(argument, value) else [f"{at}: does not match {argument}"]


def _items(argument, value, schema, root, at):
    if not isinstance(value, list):
        return []
    return [problem for index, item in enumerate(value)
            for problem in schema_problems(argument, item, root, f"{at}[{index}]")]


def _count(size: Callable[[Any], int | None], compare: Callable[[int, int], bool], words: str):
    def check(argument, value, schema, root, at):
        count = size(value)
        return [] if count is None or compare(count, argument) else [f"{at}: {words} {argument}"]

    return check


def _list_size(value):
    return len(value) if isinstance(value, list) else None


def _object_size(value):
    return len(value) if isinstance(value, dict) else None


def _unique(argument, value, schema, root, at):
    if not argument or not isinstance(value, list):
        return []
    return [] if len({repr(item) for item in value}) == len(value) else [f"{at}: items repeat"]


def _properties(argument, value, schema, root, at):
    if not isinstance(value, dict):
        return []
    return [problem for key, item in value.items() if key in argument
            for problem in schema_problems(argument[key], item, root, f"{at}.{key}")]


def _required(argument, value, schema, root, at):
    if not isinstance(value, dict):
        return []
    return [f"{at}.{key}: required" for key in argument if key not in value]


def _matched(schema, key: str) -> list:
    """The patternProperties of `schema` whose pattern matches `key` anywhere (JSON Schema's rule)."""
    return [inner for pattern, inner in schema.get("patternProperties", {}).items() if re.search(pattern, key)]


def _patterns(argument, value, schema, root, at):
    if not isinstance(value, dict):
        return []
    return [problem for key, item in value.items() for inner in _matched(schema, key)
            for problem in schema_problems(inner, item, root, f"{at}.{key}")]


def _additional(argument, value, schema, root, at):
    if not isinstance(value, dict):
        return []
    extra = [key for key in value if key not in schema.get("properties", {}) and not _matched(schema, key)]
    if argument is False:
        return [f"{at}.{key}: not allowed" for key in extra]
    return [problem for key in extra for problem in schema_problems(argument, value[key], root, f"{at}.{key}")]


def _property_names(argument, value, schema, root, at):
    if not isinstance(value, dict):
        return []
    return [problem for key in value for problem in schema_problems(argument, key, root, f"{at}.{key}")]


def _any_of(argument, value, schema, root, at):
    options = [schema_problems(option, value, root, at) for option in argument]
    return [] if any(not problems for problems in options) else [f"{at}: none of anyOf holds: {options}"]


def _one_of(argument, value, schema, root, at):
    options = [schema_problems(option, value, root, at) for option in argument]
    held = sum(not problems for problems in options)
    return [] if held == 1 else [f"{at}: {held} of oneOf hold, not 1: {options}"]


def _all_of(argument, value, schema, root, at):
    return [problem for option in argument for problem in schema_problems(option, value, root, at)]


def _not(argument, value, schema, root, at):
    return [f"{at}: holds what `not` forbids: {argument}"] if not schema_problems(argument, value, root, at) else []


_KEYWORDS = {
    "$ref": _ref, "type": _type, "enum": _enum,
    "minimum": _number(lambda value, bound: value >= bound, "less than"),
    "maximum": _number(lambda value, bound: value <= bound, "more than"),
    "exclusiveMinimum": _number(lambda value, bound: value > bound, "not more than"),
    "minLength": _min_length, "pattern": _pattern, "items": _items,
    "minItems": _count(_list_size, lambda count, bound: count >= bound, "fewer items than"),
    "maxItems": _count(_list_size, lambda count, bound: count <= bound, "more items than"),
    "maxProperties": _count(_object_size, lambda count, bound: count <= bound, "more entries than"),
    "minProperties": _count(_object_size, lambda count, bound: count >= bound, "fewer entries than"),
    "uniqueItems": _unique, "properties": _properties, "required": _required,
    "additionalProperties": _additional, "patternProperties": _patterns, "propertyNames": _property_names,
    "anyOf": _any_of, "oneOf": _one_of, "allOf": _all_of, "not": _not,
}


def fragment_schema(schema: Any) -> Any:
    """`schema` for a fragment of a document, as the docs show one: no section's setting is
    required, and every other rule holds."""
    if isinstance(schema, list):
        return [fragment_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for keyword, argument in schema.items():
        if keyword in ("properties", "$defs"):
            out[keyword] = {name: fragment_schema(item) for name, item in argument.items()}
        elif keyword == "required" and "properties" in schema:
            continue  # a section's required settings (a rule's `required` inside `not` stays)
        elif keyword == "allOf":
            # A setting required in one of two forms (`public_key` or `public_key_file`).
            out[keyword] = [fragment_schema(rule) for rule in argument if "anyOf" not in rule]
        else:
            out[keyword] = fragment_schema(argument)
    return out
