"""Parsing .pbft-ci.yml: the `cache:` key and the limits on commands; pure, with deterministic reasons."""

import pytest
import yaml

from builder.plan.spec import CacheSpec, parse_build_spec


def parse(cache) -> CacheSpec | None:
    return parse_build_spec(yaml.safe_dump({"commands": ["true"], "cache": cache}).encode()).cache


def refusal(cache) -> str:
    with pytest.raises(ValueError) as caught:
        parse(cache)
    return str(caught.value)


def test_a_spec_without_cache_has_none():
    assert parse_build_spec(b"commands: [make]\n").cache is None


def test_paths_and_key_files_are_kept_normalized():
    cache = parse({"paths": ["~/.cache/pip/", ".tox", "./build//out"], "key_files": ["./requirements.txt"]})

    assert cache == CacheSpec(paths=("~/.cache/pip", ".tox", "build/out"), key_files=("requirements.txt",))
    assert cache.container_paths() == ("/home/build/.cache/pip", "/workspace/.tox", "/workspace/build/out")


def test_key_files_are_optional():
    assert parse({"paths": ["~/.m2"]}).key_files == ()


@pytest.mark.parametrize(
    "cache, reason",
    [
        ("~/.cache", "cache: must be a mapping with a 'paths' list"),
        ({}, "cache.paths: must be a non-empty list of strings"),
        ({"paths": []}, "cache.paths: must be a non-empty list of strings"),
        ({"paths": ["~/a"], "keys": ["x"]}, "cache: unknown key 'keys'"),
        ({"paths": ["/etc"]}, "cache.paths[0]: must be '~/…' or relative to /workspace, not absolute"),
        ({"paths": ["~root/x"]}, "cache.paths[0]: only '~/' may start a path"),
        ({"paths": ["~"]}, "cache.paths[0]: must name a directory below ~ or /workspace, not all of it"),
        ({"paths": ["."]}, "cache.paths[0]: must name a directory below ~ or /workspace, not all of it"),
        ({"paths": ["~/a/../../etc"]}, "cache.paths[0]: '..' is not allowed"),
        ({"paths": ["a b"]}, "cache.paths[0]: may hold only letters, digits and . _ - + @ between slashes"),
        ({"paths": ["a*"]}, "cache.paths[0]: may hold only letters, digits and . _ - + @ between slashes"),
        ({"paths": [7]}, "cache.paths[0]: must be a non-empty string"),
        ({"paths": ["~/.cache", "~/.cache/pip"]}, "cache.paths[1]: overlaps paths[0]"),
        ({"paths": [".tox", "./.tox/"]}, "cache.paths[1]: overlaps paths[0]"),
        ({"paths": [f"d{index}" for index in range(17)]}, "cache.paths: at most 16 paths"),
        ({"paths": ["~/a"], "key_files": "requirements.txt"}, "cache.key_files: must be a list of strings"),
        ({"paths": ["~/a"], "key_files": ["~/x"]}, "cache.key_files[0]: must be relative to /workspace"),
        ({"paths": ["~/a"], "key_files": ["/etc/passwd"]}, "cache.key_files[0]: must be relative to /workspace"),
        ({"paths": ["~/a"], "key_files": ["../x"]}, "cache.key_files[0]: '..' is not allowed"),
        ({"paths": ["~/a"], "key_files": ["."]}, "cache.key_files[0]: must name a file"),
        ({"paths": ["~/a"], "key_files": [f"f{index}" for index in range(17)]}, "cache.key_files: at most 16 files"),
    ],
)
def test_bad_cache_settings_are_refused_with_a_deterministic_reason(cache, reason):
    assert refusal(cache) == f".pbft-ci.yml: {reason}"


def test_every_cache_problem_is_reported_at_once_with_the_other_keys():
    with pytest.raises(ValueError) as caught:
        parse_build_spec(yaml.safe_dump({"commands": [], "cache": {"paths": ["/x", "~/ok", "a/../b"]}}).encode())

    assert str(caught.value) == (
        ".pbft-ci.yml: commands: must be a non-empty list of strings; "
        "cache.paths[0]: must be '~/…' or relative to /workspace, not absolute; "
        "cache.paths[2]: '..' is not allowed"
    )


def test_commands_with_a_nul_byte_or_too_long_in_all_are_refused():
    with pytest.raises(ValueError, match=r"commands\[1\]: must not contain a NUL byte"):
        parse_build_spec(b'commands: ["true", "echo a\\0b"]')
    # YAML aliases repeat one long string far past the file's own size limit.
    long_line = "x" * 20000
    text = f"a: &a 'echo {long_line}'\ncommands: [*a, *a, *a, *a]\n".encode()
    with pytest.raises(ValueError, match="longer than 65536 characters in all"):
        parse_build_spec(text)
