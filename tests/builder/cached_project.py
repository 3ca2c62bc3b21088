"""A project whose build fills a dependency cache, and how to read the executor's cache lines
from a build's log: shared by the cache tests of one engine and of a remote one."""

from builder import BuildResult
from tests.builder.executor_helpers import log_text, spec

CACHE = {"paths": ["~/.cache/x", ".tox"], "key_files": ["requirements.txt"]}
# Writes both cache paths; with REQUIRE set, first prints what an earlier build left.
BUILD_SH = (
    'if [ -n "$REQUIRE" ]; then echo "restored: $(cat ~/.cache/x/f) $(cat .tox/y)"; fi\n'
    "mkdir -p ~/.cache/x .tox\n"
    'echo "home-$(cat version)" > ~/.cache/x/f\n'
    'echo "tox-$(cat version)" > .tox/y\n'
)


def cached_project(version: str, require=False, requirements="a==1\n", extra=(), before=()) -> dict:
    commands = [*before, f"REQUIRE={'1' if require else ''} sh build.sh", *extra]
    return {
        ".pbft-ci.yml": spec(*commands, cache=CACHE),
        "build.sh": BUILD_SH,
        "version": f"{version}\n",
        "requirements.txt": requirements,
    }


def cache_lines(result: BuildResult) -> list[str]:
    return [line for line in log_text(result).splitlines() if line.startswith("== cache")]
