"""`include:` in a spec (builder/plan/specdocument.py): files of the same commit merged under
the spec, GitLab's way, read by the caller's `read`; every way an inclusion goes wrong is
refused in one line. test_executor_includes.py reads them from git through whole builds."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from builder.plan.spec import parse_build_spec
from builder.plan.specdocument import MAX_INCLUDED, included_files

FILES = {
    "ci/common.yml": b"include: [ci/services.yml]\nx-py: {image: pbft-ci/busybox:latest, retry: 1}\n"
                     b"environment: {A: common, B: common}\ntimeout_s: 300\n",
    "ci/services.yml": b"services: [{name: db, image: pbft-ci/debian-postgres:bookworm}]\nenvironment: {C: services}\n",
    "ci/later.yml": b"environment: {B: later}\n",
}
SPEC = (b"include: [ci/common.yml, ci/later.yml]\nenvironment: {A: spec}\n"
        b"steps: [{name: test, extends: x-py, commands: [make]}]\n")
WRITTEN_OUT = {
    "include": ["ci/common.yml", "ci/later.yml"],
    "services": [{"name": "db", "image": "pbft-ci/debian-postgres:bookworm"}],
    "environment": {"C": "services", "A": "spec", "B": "later"},
    "timeout_s": 300,
    "steps": [{"name": "test", "image": "pbft-ci/busybox:latest", "retry": 1, "commands": ["make"]}],
}


def test_included_files_merge_under_the_spec_in_order_and_the_spec_wins():
    read = parse_build_spec(SPEC, read=FILES.get)

    written = parse_build_spec(yaml.safe_dump(WRITTEN_OUT, sort_keys=False).encode(), read=FILES.get)
    assert read.steps[0].extends == ("x-py",)
    assert dataclasses.replace(read, steps=(dataclasses.replace(read.steps[0], extends=()),)) == written
    assert (read.steps[0].image, read.steps[0].retry) == ("pbft-ci/busybox:latest", 1)
    assert dict(read.environment) == {"C": "services", "A": "spec", "B": "later"}


def test_the_files_a_spec_includes_are_collected_for_a_later_pure_reading():
    assert dict(included_files(SPEC, FILES.get)) == FILES
    assert included_files(b"commands: [a]\n", FILES.get) == ()
    assert included_files(b"[not, a, mapping]", FILES.get) == ()


@pytest.mark.parametrize("files, problem", [
    ({"a.yml": b"include: [b.yml]\n", "b.yml": b"include: [a.yml]\n"},
     "include: the files include each other in a circle: a.yml -> b.yml -> a.yml"),
    ({"a.yml": b"include: [a.yml]\n"}, "include: the files include each other in a circle: a.yml -> a.yml"),
    ({}, "include: a.yml: no regular file of at most 65536 bytes there at the commit"),
    ({"a.yml": b"after: []\n"}, "include: a.yml: after: must be in .pbft-ci.yml itself"),
    ({"a.yml": b"[1, 2]\n"}, "include: a.yml: must be a mapping of a spec's keys"),
    ({"a.yml": b"x: [\n"}, "include: a.yml: invalid YAML"),
    ({"a.yml": b"include: [b.yml]\n", "b.yml": b"surprise: 1\n"}, "unknown key 'surprise'"),
    ({"a.yml": b"include: [../b.yml]\n"}, "include: a.yml: include: must be a list of paths of .yml or .yaml files"),
    ({f"f{n}.yml": f"include: [f{n + 1}.yml]\n".encode() for n in range(MAX_INCLUDED + 1)},
     f"include: more than {MAX_INCLUDED} files in all"),
])
def test_an_inclusion_that_cannot_be_made_is_refused_in_one_line(files, problem):
    first = "f0.yml" if "f0.yml" in files else "a.yml"
    with pytest.raises(ValueError) as refused:
        parse_build_spec(f"include: [{first}]\ncommands: [t]\n".encode(), read=files.get)
    assert problem in str(refused.value)
    if "invalid YAML" not in problem:  # PyYAML's own words about where take lines of their own
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize("path, problem", [
    ("../outside.yml", "include[0]: '../outside.yml' must be relative to the repository's root, with no . or .. part"),
    ("/etc/passwd.yml", "include[0]: '/etc/passwd.yml' must be relative to the repository's root"),
    ("ci/./a.yml", "include[0]: 'ci/./a.yml' must be relative to the repository's root"),
    ("ci/a.txt", "include[0]: 'ci/a.txt' must end .yml or .yaml"),
])
def test_a_path_outside_the_checkout_or_of_another_kind_is_refused_before_anything_is_read(path, problem):
    asked = []
    with pytest.raises(ValueError) as refused:
        parse_build_spec(f"include: ['{path}']\ncommands: [t]\n".encode(), read=asked.append)
    assert problem in str(refused.value)
    assert asked == []
