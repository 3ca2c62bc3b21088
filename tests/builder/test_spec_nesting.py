""".pbft-ci.yml nested too deeply: refused with the bound and a line, before PyYAML builds
it (builder/plan/nesting.py), with the same reason wherever the parse starts on the stack."""

import sys

import pytest
import yaml

from builder.plan.nesting import MAX_NESTING
from builder.plan.spec import MAX_SPEC_BYTES, parse_build_spec, spec_document

TOO_DEEP = f"nested deeper than {MAX_NESTING} levels"


def refusal(text: bytes) -> str:
    with pytest.raises(ValueError) as refused:
        parse_build_spec(text)
    return str(refused.value)


@pytest.mark.parametrize("text", [
    b"[" * 32_000,  # PyYAML's composer recursed once per bracket, past Python's limit
    b"commands: " + b"[" * 32_000 + b"]" * 32_000,
    b"{a: " * 16_000,
    b"- " * 32_000 + b"x",  # block sequences, all on one line
], ids=["brackets", "closed brackets under a key", "flow mappings", "block sequences"])
def test_a_spec_nested_tens_of_thousands_deep_under_the_size_limit_is_refused_with_the_bound(text):
    assert len(text) <= MAX_SPEC_BYTES
    assert refusal(text) == f".pbft-ci.yml: {TOO_DEEP} (line 1)"


def test_the_line_is_where_the_nesting_passes_the_bound():
    text = "".join("  " * level + f"k{level}:\n" for level in range(MAX_NESTING + 5)).encode()
    # Line n starts the mapping of level n, the document's own being level 1.
    assert refusal(text) == f".pbft-ci.yml: {TOO_DEEP} (line {MAX_NESTING + 1})"


def test_the_bound_itself_is_built_and_one_level_more_is_not():
    def nested(levels: int) -> bytes:
        # The document's mapping, then `levels - 1` lists around one command.
        return b"commands: " + b"[" * (levels - 1) + b'"true"' + b"]" * (levels - 1)

    assert refusal(nested(MAX_NESTING)) == ".pbft-ci.yml: commands[0]: must be a non-empty string"
    assert refusal(nested(MAX_NESTING + 1)) == f".pbft-ci.yml: {TOO_DEEP} (line 1)"


def test_the_reason_does_not_depend_on_how_deep_the_stack_already_is():
    text = b"commands: " + b"[" * 32_000

    def at_depth(frames: int) -> str:
        return at_depth(frames - 1) if frames else refusal(text)

    assert at_depth(0) == at_depth(sys.getrecursionlimit() - 200)


def test_aliases_count_as_the_nesting_they_stand_for():
    # Each anchor nests the one before it ten levels further down: no line nests more than
    # eleven deep, but the value built under the last alias would nest 392 levels. Line i + 1
    # holds a_i, 10 i + 1 levels, and its alias stands at level 10 i + 2: line 8 passes 64.
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} {'[' * 10}*a{i - 1}{']' * 10}" for i in range(1, 40)]
    text = "\n".join(lines).encode()
    assert refusal(text) == f".pbft-ci.yml: {TOO_DEEP} (line 8)"


def test_a_chain_of_merge_keys_counts_as_nesting():
    # PyYAML flattens merge keys by calling itself once per link of the chain: the document's
    # own merge of the last link went 2,400 calls deep. Line i + 1 holds m_i, whose merge
    # stands at level i + 2.
    lines = ["m0: &m0 {k: v}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}}}" for i in range(1, 2400)] + ["<<: *m2399"]
    text = "\n".join(lines).encode()
    assert len(text) <= MAX_SPEC_BYTES
    assert refusal(text) == f".pbft-ci.yml: {TOO_DEEP} (line {MAX_NESTING})"


def test_an_alias_inside_its_own_anchor_is_refused():
    assert refusal(b"commands: &a [*a]\n") == (
        ".pbft-ci.yml: alias *a (line 1) is inside its own anchor: the value would contain itself")


def test_aliases_of_shallow_values_and_merge_keys_still_build():
    text = b"base: &base {image: pbft-ci/busybox:latest}\nx: &x [true]\nenvironment: {<<: {A: '1'}}\ncommands: *x\n"
    assert spec_document(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text, error", [
    (b"commands: [\n", "while parsing a flow node"),
    (b"x: &a [1]\ny: &a [2]\n", "found duplicate anchor 'a'"),
    (b"commands: *nope\n", "found undefined alias 'nope'"),
    (b"commands: [x]\n---\n" + b"[" * 1000, "expected a single document in the stream"),
])
def test_what_is_not_yaml_keeps_pyyamls_own_reason(text, error):
    reason = refusal(text)
    assert reason.startswith(".pbft-ci.yml: invalid YAML: ") and error in reason, reason


def test_the_size_limit_comes_first():
    assert refusal(b"[" * (MAX_SPEC_BYTES + 1)) == f".pbft-ci.yml: larger than {MAX_SPEC_BYTES} bytes"
