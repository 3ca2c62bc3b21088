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
    when:                           # optional: the events, branches and changed paths that build
      event: [push, pull_request]   # (builder/plan/triggers.py); a build they exclude ends `skipped`
                                    # (a pull request: those of its base branch's spec decide)
    environment:                    # optional: variables every command gets (builder/plan/pipeline.py)
      APP_ENV: test
    matrix:                         # optional: one build per combination (builder/plan/matrix.py)
      PYTHON: ["3.11", "3.12"]

In place of `commands`, a pipeline: `steps:`, each with its own name, image,
commands, environment, `when:` and `depends_on:` (builder/plan/pipeline.py), sharing
one /workspace; and `services:`, containers the build reaches by name.

Parsing is pure. Every problem is reported at once, with the offending key, in
a ValueError whose text becomes the deterministic reason of an error result.
"""

import dataclasses
import re
from dataclasses import dataclass

import yaml

from pbft.build import combination_label
from builder.plan.containerpaths import HOME_DIR, WORKSPACE_DIR
from builder.plan.artifactpatterns import MAX_PATTERNS, normalize_pattern
from builder.plan.matrix import Combination, parse_matrix, with_images
from builder.plan.nesting import nesting_problem
from builder.plan.pipeline import Service, Step, image_problems, parse_environment, parse_services, parse_steps
from builder.plan.actions import parse_actions
from builder.plan.triggers import Condition, parse_when

SPEC_FILE = ".pbft-ci.yml"
MAX_SPEC_BYTES = 64 * 1024
# Below the kernel's limit on one argument (128 KiB), which the script is passed as.
MAX_SCRIPT_CHARS = 64 * 1024
MAX_CACHE_PATHS = 16
MAX_KEY_FILES = 16
_KEYS = (
    "image", "commands", "steps", "services", "environment", "timeout_s", "user", "cache", "artifacts", "when", "matrix",
    "after",
)
_CACHE_KEYS = ("paths", "key_files")
# Cache paths end up in a shell script and in tar member names; a plain
# character set keeps both free of quoting, globbing and encoding surprises.
_PATH_PART = re.compile(r"[A-Za-z0-9._+@-]+")


@dataclass(frozen=True)
class CacheSpec:
    """Directories a repository keeps between its builds on one node.

    `paths` are normalized as written ("~/.cache/pip", ".tox"); `key_files`
    are paths relative to /workspace.
    """

    paths: tuple[str, ...]
    key_files: tuple[str, ...] = ()

    def container_paths(self) -> tuple[str, ...]:
        """The paths as the build container sees them, absolute."""
        return tuple(_container_path(path) for path in self.paths)


def _container_path(path: str) -> str:
    if path.startswith("~/"):
        return f"{HOME_DIR}/{path[2:]}"
    return f"{WORKSPACE_DIR}/{path}"


@dataclass(frozen=True)
class BuildSpec:
    image: str | None
    commands: tuple[str, ...]
    timeout_s: float | None
    user: str | None = None  # "root" or None (the node's build user)
    cache: CacheSpec | None = None
    artifacts: tuple[str, ...] = ()  # normalized patterns, as written; () when the spec names none
    when: tuple[Condition, ...] = ()  # () builds for every trigger
    # A pipeline (then `commands` is ()), and the variables every command gets.
    steps: tuple[Step, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    # Containers next to the build's (builder/plan/pipeline.py); a one-script spec with services runs
    # as a pipeline of one step, `build`.
    services: tuple[Service, ...] = ()
    # Every combination of the spec's `matrix:` (builder/plan/matrix.py), () without one; and the
    # combination this spec is for, whose axes are in `environment` and its images.
    matrix: tuple[Combination, ...] = ()
    combination: Combination = ()

    def script(self) -> str:
        """One command per line, for `/bin/sh -e -c`."""
        return "\n".join(self.commands)


def parse_build_spec(text: bytes, combination: Combination | None = None) -> BuildSpec:
    """The spec, or a ValueError naming every problem. With a `matrix:` (builder/plan/matrix.py),
    `combination` picks the build: its axes are variables and fill `${AXIS}` in images, and a
    combination the matrix does not declare is refused. Without `combination`, every
    combination's spec is checked and `matrix` lists them; the rest of what is returned is
    the first combination's, which the node never runs (it runs each combination's own)."""
    document = spec_document(text)
    if not isinstance(document, dict):
        raise ValueError(f"{SPEC_FILE}: must be a mapping with a 'commands' or a 'steps' list")
    matrix, errors = parse_matrix(document.get("matrix"))
    if not errors and combination is not None and combination not in matrix:
        errors.append(
            f"matrix: declares no combination {combination_label(combination)}" if matrix
            else f"matrix: the build names the combination {combination_label(combination)}; the spec has no matrix"
        )
    if errors:
        raise ValueError(f"{SPEC_FILE}: " + "; ".join(errors))
    chosen = [combination] if combination is not None else list(matrix) or [()]
    parsed = []
    for each in chosen:
        substituted, image_errors = with_images(document, each)
        spec, spec_errors = _parse_document(substituted, each)
        parsed.append((each, spec, image_errors + spec_errors))
    errors = _matrix_problems(parsed)
    if errors:
        raise ValueError(f"{SPEC_FILE}: " + "; ".join(errors))
    return dataclasses.replace(parsed[0][1], matrix=matrix)


def spec_document(text: bytes):
    """The spec's YAML document, as PyYAML builds it, or a ValueError saying why it is not
    built: too large, nested too deeply (builder/plan/nesting.py), or not YAML."""
    if len(text) > MAX_SPEC_BYTES:
        raise ValueError(f"{SPEC_FILE}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        # Checked first: building a document nested deeper recurses past Python's limit.
        problem = nesting_problem(text)
        if problem is not None:
            raise ValueError(f"{SPEC_FILE}: {problem}")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The mark gives line and column only, never a path, so the text is
        # the same on every node.
        raise ValueError(f"{SPEC_FILE}: invalid YAML: {exc}") from None


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


def _parse_document(document: dict, combination: Combination) -> tuple[BuildSpec | None, list[str]]:
    """The spec of one combination (() without a matrix), and the problems."""
    errors = [f"unknown key {key!r}" for key in document if key not in _KEYS]
    image = document.get("image")
    errors += image_problems(image, "image")
    commands, steps = document.get("commands"), ()
    if "steps" in document:
        if commands is not None:
            errors.append("commands and steps: a spec has one or the other")
        steps, step_errors = parse_steps(document["steps"], command_problems)
        errors += step_errors
        if document.get("cache") is not None:
            errors.append("cache: only the one-script form (commands) keeps caches so far")
    else:
        errors += command_problems(commands, "commands")
    environment, environment_errors = parse_environment(document.get("environment"), "environment")
    errors += environment_errors
    # The axes come with the spec's variables, so every step, service and script gets them.
    errors += [f"environment.{name}: an axis of the matrix, which each combination sets" for name, _ in environment
               if name in dict(combination)]
    environment += combination
    services = ()
    if document.get("services") is not None:
        services, service_errors = parse_services(document["services"], command_problems)
        errors += service_errors
        if document.get("cache") is not None and "steps" not in document:
            errors.append("cache: only a one-script spec without services keeps caches so far")
    timeout_s = document.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
    ):
        errors.append("timeout_s: must be a positive number")
    user = document.get("user")
    if user is not None and user != "root":
        # The node picks the unprivileged build user; a spec can only ask to
        # leave it for root, which the executor then allows or refuses.
        errors.append("user: must be 'root' when given")
    cache = None
    if document.get("cache") is not None:
        cache, cache_errors = _parse_cache(document["cache"])
        errors += cache_errors
    artifacts, artifact_errors = _parse_artifacts(document.get("artifacts"))
    errors += artifact_errors
    when, when_errors = parse_when(document.get("when"))
    errors += when_errors
    # Checked here, run only by the action runner once the verdict is certified (builder/plan/actions.py).
    errors += parse_actions(document.get("after"), command_problems)[1]
    if errors:
        return None, errors
    return BuildSpec(
        image=image,
        commands=tuple(commands or ()),
        timeout_s=None if timeout_s is None else float(timeout_s),
        user=user,
        cache=cache,
        artifacts=artifacts,
        when=when,
        steps=steps,
        environment=environment,
        services=services,
        combination=combination,
    ), []


def command_problems(commands, where: str) -> list[str]:
    """What is wrong with a `commands` list (the spec's, or a step's)."""
    if not isinstance(commands, list) or not commands:
        return [f"{where}: must be a non-empty list of strings"]
    errors = [
        f"{where}[{index}]: must be a non-empty string"
        for index, command in enumerate(commands)
        if not isinstance(command, str) or not command.strip()
    ]
    # A shell silently drops a NUL byte, so a command holding one would not
    # run as written; and the joined script must fit one argument (YAML
    # aliases can make it far larger than the file).
    errors += [
        f"{where}[{index}]: must not contain a NUL byte"
        for index, command in enumerate(commands)
        if isinstance(command, str) and "\0" in command
    ]
    if all(isinstance(command, str) for command in commands) and sum(map(len, commands)) > MAX_SCRIPT_CHARS:
        errors.append(f"{where}: longer than {MAX_SCRIPT_CHARS} characters in all")
    return errors


def _parse_artifacts(section) -> tuple[tuple[str, ...], list[str]]:
    """The `artifacts:` patterns, normalized, and the problems; absent or null means none."""
    if section is None:
        return (), []
    if not isinstance(section, list) or not section:
        return (), ["artifacts: must be a non-empty list of paths or globs relative to /workspace"]
    if len(section) > MAX_PATTERNS:
        return (), [f"artifacts: at most {MAX_PATTERNS} paths or globs"]
    patterns: list[str | None] = []
    errors = []
    for index, entry in enumerate(section):
        try:
            pattern = normalize_pattern(entry)
        except ValueError as exc:
            errors.append(f"artifacts[{index}]: {exc}")
            patterns.append(None)
            continue
        if pattern in patterns:
            errors.append(f"artifacts[{index}]: repeats artifacts[{patterns.index(pattern)}]")
        patterns.append(pattern)
    return tuple(patterns), errors


def _parse_cache(section) -> tuple[CacheSpec | None, list[str]]:
    if not isinstance(section, dict):
        return None, ["cache: must be a mapping with a 'paths' list"]
    errors = [f"cache: unknown key {key!r}" for key in section if key not in _CACHE_KEYS]
    paths, path_errors = _checked_list(section, "paths", _cache_path_after, limit=MAX_CACHE_PATHS, noun="paths")
    key_files, key_file_errors = _checked_list(
        section, "key_files", lambda key_file, _: _key_file(key_file), limit=MAX_KEY_FILES, noun="files", default=[]
    )
    errors += path_errors + key_file_errors
    if errors:
        return None, errors
    return CacheSpec(paths=tuple(paths), key_files=tuple(key_files)), []


def _cache_path(path) -> str:
    """'~/…' or a workspace path, normalized: no '.', empty or trailing parts."""
    if not isinstance(path, str) or not path:
        raise ValueError("must be a non-empty string")
    if path.startswith("/"):
        raise ValueError("must be '~/…' or relative to /workspace, not absolute")
    under_home = path == "~" or path.startswith("~/")
    if path.startswith("~") and not under_home:
        raise ValueError("only '~/' may start a path")
    parts = _parts(path[1:] if under_home else path)
    if not parts:
        raise ValueError("must name a directory below ~ or /workspace, not all of it")
    return ("~/" if under_home else "") + "/".join(parts)


def _key_file(path) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError("must be a non-empty string")
    if path.startswith(("/", "~")):
        raise ValueError("must be relative to /workspace")
    parts = _parts(path)
    if not parts:
        raise ValueError("must name a file")
    return "/".join(parts)


def _parts(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' is not allowed")
    if not all(_PATH_PART.fullmatch(part) for part in parts):
        raise ValueError("may hold only letters, digits and . _ - + @ between slashes")
    return parts


def _checked_list(section: dict, key: str, normalize, *, limit: int, noun: str, default=None):
    """The entries of the list at `key`, each normalized by `normalize(entry, earlier)`
    (None where refused), and the problems; no default means the list is required."""
    entries = section.get(key, default)
    if not isinstance(entries, list) or (default is None and not entries):
        return [], [f"cache.{key}: must be a {'' if default is not None else 'non-empty '}list of strings"]
    if len(entries) > limit:
        return [], [f"cache.{key}: at most {limit} {noun}"]
    normalized: list[str | None] = []
    errors = []
    for index, entry in enumerate(entries):
        try:
            normalized.append(normalize(entry, normalized))
        except ValueError as exc:
            errors.append(f"cache.{key}[{index}]: {exc}")
            normalized.append(None)
    return normalized, errors


def _cache_path_after(path, earlier: list[str | None]) -> str:
    normalized = _cache_path(path)
    _check_no_overlap(normalized, earlier)
    return normalized


def _check_no_overlap(path: str, earlier: list[str | None]) -> None:
    """Nested paths would be saved twice and restored in an order that matters."""
    for index, other in enumerate(earlier):
        if other is not None and (path == other or path.startswith(other + "/") or other.startswith(path + "/")):
            raise ValueError(f"overlaps paths[{index}]")
