"""The build spec: `.pbft-ci.yml` at the root of the built commit.

    image: pbft-ci/busybox:latest   # optional, the node's default image otherwise
    commands:                       # required, run in order by `sh -e`
      - sh test.sh
    timeout_s: 60                   # optional, capped by the node's limit
    user: root                      # optional; refused unless the network allows root builds
    cache:                          # optional: directories restored before and saved after a build
      paths: [~/.cache/pip, .tox]   # under HOME (~/...) or relative to /workspace
      key_files: [requirements.txt] # optional: the cache key covers these files' contents
    artifacts:                      # optional: files taken from /workspace after a successful build
      - dist/*.whl                  # relative paths or globs (builder/workspace/artifacts.py)
    reports:                        # optional: test reports read after the build, whatever its end
      junit: [reports/*.xml]        # (builder/plan/reportspec.py)
    when:                           # optional: the events, branches and changed paths that build
      event: [push, pull_request]   # (builder/plan/triggers.py); a build they exclude ends `skipped`
                                    # (a pull request: those of its base branch's spec decide)
    environment:                    # optional: variables every command gets (builder/plan/specvalues.py)
      APP_ENV: test
    matrix:                         # optional: one build per combination (builder/plan/matrix.py)
      PYTHON: ["3.11", "3.12"]
    concurrency:                    # optional: one build of the group at a time on each node
      group: deploy-lab             # (builder/plan/concurrencyspec.py)

    x-defaults: &defaults           # optional: any top-level key starting with x- is never read,
      image: python:3.12            # a home for anchors that `<<: *defaults` merges elsewhere,
                                    # and a template steps and services name in `extends:`
                                    # (builder/plan/templates.py)

In place of `commands`, a pipeline: `steps:`, each with its own name, image,
commands, environment, `when:` and `depends_on:` (builder/plan/pipeline.py), sharing
one /workspace; and `services:`, containers the build reaches by name.

builder/plan/specdocument.py makes the file into the document read here (its size and
nesting bounded, its anchors merged, its `extends:` applied). The file is declared in the
schema idiom (shared/schema), section by section: `BuildSpec`
here, `cache:` in builder/plan/cachespec.py, its steps and services in builder/plan/pipeline.py,
`when:` in builder/plan/triggers.py, `matrix:` in builder/plan/matrix.py, `after:` in
builder/plan/actions.py and the kinds of its values in builder/plan/specvalues.py. The
reading, docs/pipeline-reference.md and the JSON Schema editors complete a spec with
(docs/schema/pbft-ci.schema.json) come from that one declaration (scripts/spec_reference.py
writes both files); scripts/lint.py checks a spec as nodes do.

Parsing is pure. Every problem is reported at once, with the offending key, in
a ValueError whose text becomes the deterministic reason of an error result.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from builder.plan.actions import AFTER, ActionSpec
from builder.plan.cachespec import CacheSpec
from builder.plan.inputs import INPUTS, InputSpec
from builder.plan.matrix import MATRIX, Combination, Strategy, matrix_strategy, with_images
from builder.plan.pipeline import SERVICES, STEPS, Service, Step
from builder.plan.specdocument import (
    EXTENSION,
    MAX_INCLUDED,
    MAX_SPEC_BYTES,
    SPEC_FILE,
    Read,
    include_path_problem,
    spec_document,
    spec_mapping,
)
from builder.plan.specvalues import (
    ARTIFACTS, COMMANDS, IMAGE, REPORTS, ConcurrencySpec, ReportsSpec, Variables, spec_reading,
)
from builder.plan.triggers import WHEN, Condition
from pbft.build import combination_label
from shared.schema import Choice, ListOf, Number, Section, Text, section, setting

__all__ = [
    "EXTENSION", "MAX_SPEC_BYTES", "SPEC_FILE", "BuildSpec", "CacheSpec", "parse_build_spec", "spec_document",
    "spec_matrix",
]


def _one_form(spec: BuildSpec, given: frozenset) -> Iterable[tuple[str, str]]:
    """What the spec's parts allow together, for one combination of its matrix."""
    if ("steps" in given or "services" in given) and spec.cache is not None:
        for index, path in enumerate(spec.cache.paths):
            if path.startswith("~/"):
                yield f"cache.paths[{index}]", (
                    "in a pipeline each step has a home of its own: a cache path is relative to /workspace "
                    "(point the tool's cache there, e.g. PIP_CACHE_DIR=/workspace/.cache/pip)")
    # The axes come with the spec's variables, so every step, service and script gets them.
    axes = dict(spec.combination)
    for name, _ in spec.environment:
        if name in axes:
            yield f"environment.{name}", "an axis of the matrix, which each combination sets"


def _include_path(text: str) -> str:
    problem = include_path_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


@section(check=_one_form, either=("commands", "steps"), ignored=EXTENSION)
class BuildSpec:
    """A build: one script (`commands`) or a pipeline (`steps`), and what it runs with."""

    image: str | None = setting(IMAGE, default=None,
                                doc="the image it runs in: found on the node's engine, or pulled; the node's otherwise")
    commands: tuple[str, ...] = setting(COMMANDS, default=(),
                                        doc="one `sh -e` script, one line per entry, run in /workspace "
                                            "in place of the image's entrypoint")
    # A pipeline (then `commands` is ()), and the variables every command gets.
    steps: tuple[Step, ...] = setting(STEPS, default=(), nullable=False,
                                      doc="a pipeline: steps sharing one /workspace, each in a container of its own")
    environment: tuple[tuple[str, str], ...] = setting(Variables(), default=(),
                                                       doc="variables every step, service and script gets")
    # Containers next to the build's (builder/plan/pipeline.py); a one-script spec with services runs
    # as a pipeline of one step, `build`.
    services: tuple[Service, ...] = setting(SERVICES, default=(),
                                            doc="containers started before the first step, reached by name")
    timeout_s: float | None = setting(Number(above=0, refusal="must be a positive number"), default=None,
                                      doc="the build's deadline, capped by the network's `build.timeout_s`")
    user: str | None = setting(Choice(("root",), refusal="must be 'root' when given"), default=None,
                               doc="`root`: run as root, where the network allows it; the node's build user otherwise")
    cache: CacheSpec | None = setting(Section(CacheSpec, refusal="must be a mapping with a 'paths' list"), default=None,
                                      doc="directories restored before and saved after a successful build")
    artifacts: tuple[str, ...] = setting(ARTIFACTS, default=(),
                                         doc="files of /workspace the nodes take and hash after a successful build")
    reports: ReportsSpec | None = setting(
        REPORTS, default=None, doc="test reports of /workspace each node reads after the build, whatever its end")
    when: tuple[Condition, ...] = setting(WHEN, default=(), doc="the triggers that build; any one that holds runs it")
    concurrency: ConcurrencySpec | None = setting(
        Section(ConcurrencySpec, refusal="must be a mapping with a 'group'"), default=None,
        doc="a group whose builds run one at a time on each node, in the order's order")
    # Every combination of the spec's `matrix:` (builder/plan/matrix.py), () without one; and the
    # combination this spec is for, whose axes are in `environment` and its images.
    matrix: tuple[Combination, ...] = setting(MATRIX, default=(), doc="one build per combination of its axes' values")
    # Checked with the rest, run only by the action runner once the verdict is certified
    # (builder/plan/actions.py).
    after: tuple[ActionSpec, ...] = setting(AFTER, default=(), doc="actions run once, after the verdict is certified")
    # What a manual run may give its build (builder/plan/inputs.py), checked by each node
    # against the values the agreed request names.
    inputs: tuple[InputSpec, ...] = setting(INPUTS, default=(),
                                            doc="values a manual run may give, which its build sees as CI_INPUT_<NAME>")
    include: tuple[str, ...] = setting(
        ListOf(Text(what="a path", check=_include_path, refusal="must be a path of a .yml or .yaml file"),
               min_items=1, max_items=MAX_INCLUDED, refusal="must be a non-empty list of paths",
               too_many=f"at most {MAX_INCLUDED} files"),
        default=(), doc="files of the same commit merged under this one, in order (paths from the repository's root)")
    combination: Combination = ()
    # How the client runs the matrix's combinations (builder/plan/matrix.py).
    strategy: Strategy = Strategy()

    def script(self) -> str:
        """One command per line, for `/bin/sh -e -c`."""
        return "\n".join(self.commands)


def parse_build_spec(text: bytes, combination: Combination | None = None, read: Read | None = None) -> BuildSpec:
    """The spec, or a ValueError naming every problem. With a `matrix:` (builder/plan/matrix.py),
    `combination` picks the build: its axes are variables and fill `${AXIS}` in images, and a
    combination the matrix does not declare is refused. Without `combination`, every
    combination's spec is checked and `matrix` lists them; the rest of what is returned is
    the first combination's, which the node never runs (it runs each combination's own)."""
    document, template_errors = spec_mapping(text, read)
    # The matrix first, alone: the rest is read once per combination it declares.
    matrix = _declared_matrix(document)
    if combination is not None and combination not in matrix:
        raise ValueError(
            f"{SPEC_FILE}: matrix: declares no combination {combination_label(combination)}" if matrix
            else f"{SPEC_FILE}: matrix: the build names the combination {combination_label(combination)}; "
                 "the spec has no matrix"
        )
    chosen = [combination] if combination is not None else list(matrix) or [()]
    parsed = []
    for each in chosen:
        substituted, image_errors = with_images(document, each)
        spec, spec_errors = _read(substituted, each, matrix)
        parsed.append((each, spec, template_errors + image_errors + spec_errors))
    errors = _matrix_problems(parsed)
    if errors:
        raise ValueError(f"{SPEC_FILE}: " + "; ".join(errors))
    return parsed[0][1]


def spec_matrix(text: bytes, read: Read | None = None) -> tuple[Combination, ...]:
    """The combinations the spec's `matrix:` declares, () without one; a ValueError, as
    parse_build_spec's, when the file or its matrix is refused (not when the rest is)."""
    return _declared_matrix(spec_mapping(text, read)[0])


def _declared_matrix(document: dict) -> tuple[Combination, ...]:
    if document.get("matrix") is None:
        return ()
    reading = spec_reading()
    matrix = reading.value(MATRIX, document["matrix"], "matrix")
    if reading.problems:
        raise ValueError(f"{SPEC_FILE}: " + "; ".join(reading.problems))
    return matrix


def _read(document: dict, combination: Combination,
          matrix: tuple[Combination, ...]) -> tuple[BuildSpec | None, list[str]]:
    """The spec of one combination (() without a matrix), and the problems."""
    reading = spec_reading()
    spec = reading.section(BuildSpec, document, "", fixed={"combination": combination, "matrix": matrix,
                                                           "strategy": matrix_strategy(document)})
    if reading.problems:
        return None, reading.problems
    return dataclasses.replace(spec, environment=spec.environment + combination), []


def _matrix_problems(parsed: list[tuple[Combination, BuildSpec | None, list[str]]]) -> list[str]:
    """Every combination's problems once: one that only some combinations have names the first."""
    problems: list[str] = []
    for combination, _, errors in parsed:
        for error in errors:
            if not all(error in others for _, _, others in parsed):
                error = f"{error} (in {combination_label(combination)})"
            if error not in problems:
                problems.append(error)
    return problems
