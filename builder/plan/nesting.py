"""How deeply a YAML document nests, found before PyYAML builds it.

PyYAML's parser is a loop over a stack of states, but its composer (and parts of its
constructor, such as merge keys) call themselves once per level: a 64 KB `.pbft-ci.yml`
of 32,000 `[` ends in a RecursionError whose point depends on how deep the stack already
was. Walking the parser's events first refuses such a document with a reason that names
the bound and a line, the same on every node, before anything recursive runs.

Aliases count as what they stand for, since the built document holds the anchored value
there and whatever walks it (the constructor's merge keys, str() of a refused value) goes
as deep: a chain of anchors, each nesting its predecessor's alias a few levels down,
builds a value far deeper than any level of brackets in the file. An alias inside its own
anchor builds a value that contains itself, deep without end.

The walk parses the file once more than loading does, at about the cost of loading it
(some 90 ms for 64 KB of commands); the spec's size limit bounds both.
"""

from __future__ import annotations

import yaml

# Levels of mappings and sequences, the document's own mapping being the first. A real
# spec nests about six deep (steps, a step, its when, a condition, its include list); the
# bound leaves room for any hand-written file and keeps PyYAML's recursion far from
# Python's limit, wherever on the stack the parse starts.
MAX_NESTING = 64


def nesting_problem(text: bytes | str) -> str | None:
    """Why `text` nests too deeply to be built, with the line where it goes past the bound;
    None if it does not. A syntax error raises PyYAML's own yaml.YAMLError, as loading would.

    The walk stops where loading stops with an error of its own before building more (a
    repeated anchor, a second document): everything before it is within the bound, so
    loading gets there and reports that error as it always has."""
    opened: list[str | None] = []  # each open collection's anchor, None where it has none
    heights: list[int] = []  # the deepest nesting inside each open collection so far
    anchored: dict[str, int] = {}  # the nesting each closed anchor holds
    documents = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                return None
            continue
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in opened:
                return (f"alias *{event.anchor} (line {event.start_mark.line + 1}) is inside its own anchor: "
                        "the value would contain itself")
            # An alias of an anchor not seen yet is PyYAML's error to report.
            height = anchored.get(event.anchor, 0)
            if len(opened) + height > MAX_NESTING:
                return _too_deep(event)
            if heights:
                heights[-1] = max(heights[-1], height)
            continue
        anchor = getattr(event, "anchor", None)
        if anchor is not None and (anchor in anchored or anchor in opened):
            return None
        if isinstance(event, yaml.CollectionStartEvent):
            opened.append(anchor)
            heights.append(0)
            if len(opened) > MAX_NESTING:
                return _too_deep(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, height = opened.pop(), heights.pop() + 1
            if anchor is not None:
                anchored[anchor] = height
            if heights:
                heights[-1] = max(heights[-1], height)
        elif anchor is not None:  # a scalar's
            anchored[anchor] = 0
    return None


def _too_deep(event: yaml.Event) -> str:
    return f"nested deeper than {MAX_NESTING} levels (line {event.start_mark.line + 1})"
