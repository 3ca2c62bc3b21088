"""Artifacts: the spec's `artifacts:` patterns, and taking the selected files out of a workspace archive.

Pure: the archives are built in memory the way the Docker engine names its
entries (`workspace/…` for /workspace, `dist/…` for /workspace/dist), and
nothing here touches Docker.
"""

import hashlib
import io
import tarfile

import pytest
import yaml

from builder.plan.artifactpatterns import ArtifactError, Pattern, archive_path, archive_roots, normalize_pattern
from builder.workspace.artifacts import Collector
from builder.plan.spec import parse_build_spec
from pbft.attestation import manifest_digest


def parse(artifacts):
    return parse_build_spec(yaml.safe_dump({"commands": ["true"], "artifacts": artifacts}).encode()).artifacts


def refusal(artifacts) -> str:
    with pytest.raises(ValueError) as caught:
        parse(artifacts)
    return str(caught.value)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tree:
    """A workspace archive as the engine streams it: entries in the order given (the engine walks lexically)."""

    def __init__(self, prefix: str = "workspace", *, root_dir: bool = True):
        self.prefix = prefix
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)
        if root_dir:
            self.add_dir("")

    def _info(self, name: str, kind) -> tarfile.TarInfo:
        info = tarfile.TarInfo(f"{self.prefix}/{name}" if name else self.prefix)
        info.type = kind
        return info

    def add_raw(self, name: str) -> "Tree":
        """An entry named `name` exactly, not under the prefix."""
        self.tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
        return self

    def add_dir(self, name: str) -> "Tree":
        info = self._info(name, tarfile.DIRTYPE)
        info.mode = 0o755
        self.tar.addfile(info)
        return self

    def add_file(self, name: str, data: bytes) -> "Tree":
        info = self._info(name, tarfile.REGTYPE)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))
        return self

    def add_link(self, name: str, target: str, kind=tarfile.SYMTYPE) -> "Tree":
        info = self._info(name, kind)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def add(self, name: str, kind) -> "Tree":
        self.tar.addfile(self._info(name, kind))
        return self

    def stream(self) -> io.BytesIO:
        self.tar.close()
        return io.BytesIO(self.buffer.getvalue())


def collect(tmp_path, patterns, *trees: tuple[str, Tree], max_bytes=1024 * 1024, max_files=256, max_entries=10_000):
    patterns = tuple(normalize_pattern(pattern) for pattern in patterns)
    collector = Collector(
        patterns, tmp_path / "out", max_bytes=max_bytes, max_files=max_files, max_entries=max_entries
    )
    for root, tree in trees:
        collector.add_archive(tree.stream(), root)
    return collector.finish()


def collect_refused(tmp_path, patterns, *trees, **limits) -> str:
    with pytest.raises(ArtifactError) as caught:
        collect(tmp_path, patterns, *trees, **limits)
    return caught.value.reason


def dist_tree() -> Tree:
    return (
        Tree().add_dir("dist").add_file("dist/a-1.0.whl", b"wheel a").add_file("dist/b-1.0.whl", b"wheel b")
        .add_file("dist/notes.txt", b"notes").add_dir("dist/sub").add_file("dist/sub/c-1.0.whl", b"wheel c")
        .add_file("setup.py", b"setup()")
    )


# --- the spec -------------------------------------------------------------


CHARACTERS = "may hold only letters, digits, . _ - + @ and the wildcards * ? between slashes"


def test_a_spec_without_artifacts_has_none():
    assert parse_build_spec(b"commands: [make]\n").artifacts == ()


def test_patterns_are_kept_normalized_in_order():
    assert parse(["./dist//*.whl", "out/app.bin/", "**/*.so", "reports"]) == (
        "dist/*.whl", "out/app.bin", "**/*.so", "reports",
    )


@pytest.mark.parametrize(
    "artifacts, reason",
    [
        ("dist/*.whl", "artifacts: must be a non-empty list of paths or globs relative to /workspace"),
        ([], "artifacts: must be a non-empty list of paths or globs relative to /workspace"),
        ({"paths": ["a"]}, "artifacts: must be a non-empty list of paths or globs relative to /workspace"),
        ([7], "artifacts[0]: must be a non-empty string"),
        ([""], "artifacts[0]: must be a non-empty string"),
        (["/etc/passwd"], "artifacts[0]: must be relative to /workspace, not absolute"),
        (["~/.ssh/id_rsa"], "artifacts[0]: must be relative to /workspace; artifacts are never taken from HOME"),
        (["dist/../../etc"], "artifacts[0]: '..' is not allowed"),
        (["."], "artifacts[0]: must name files below /workspace, not the workspace itself (use '**' for all)"),
        (["./"], "artifacts[0]: must name files below /workspace, not the workspace itself (use '**' for all)"),
        (["a b"], f"artifacts[0]: {CHARACTERS}"),
        (["dist/[ab].whl"], f"artifacts[0]: {CHARACTERS}"),
        (["dist/a\0"], f"artifacts[0]: {CHARACTERS}"),
        (["dist/**.whl"], "artifacts[0]: '**' must be a whole part, as in 'dist/**/*.whl'"),
        (["x" * 257], "artifacts[0]: longer than 256 characters"),
        (["dist", "./dist/"], "artifacts[1]: repeats artifacts[0]"),
        ([f"f{index}" for index in range(33)], "artifacts: at most 32 paths or globs"),
    ],
)
def test_bad_artifacts_are_refused_with_a_deterministic_reason(artifacts, reason):
    assert refusal(artifacts) == f".pbft-ci.yml: {reason}"


def test_every_bad_pattern_is_reported_at_once():
    assert refusal(["/a", "ok", "b/../c"]) == (
        ".pbft-ci.yml: artifacts[0]: must be relative to /workspace, not absolute; artifacts[2]: '..' is not allowed"
    )


# --- matching -------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("dist/*.whl", "dist/a-1.0.whl", True),
        ("dist/*.whl", "dist/sub/c-1.0.whl", False),
        ("dist/*.whl", "dist/.hidden.whl", True),
        ("dist/?.bin", "dist/a.bin", True),
        ("dist/?.bin", "dist/ab.bin", False),
        ("**/*.whl", "a.whl", True),
        ("**/*.whl", "dist/sub/c.whl", True),
        ("dist/**/*.whl", "dist/c.whl", True),
        ("dist/**/*.whl", "dist/x/y/c.whl", True),
        ("dist/**", "dist/x/y", True),
        ("dist/**", "dist", False),
        ("out/app.bin", "out/app.bin", True),
        ("out/app.bin", "out/app.bin.sig", False),
        ("a+b@1.0", "a+b@1.0", True),
        ("a.b", "aXb", False),
    ],
)
def test_glob_matching(pattern, path, matches):
    assert bool(Pattern(normalize_pattern(pattern)).regex().fullmatch(path)) is matches


def test_archive_roots_are_the_top_level_names_or_the_whole_workspace():
    assert archive_roots(["out/app.bin", "dist/*.whl", "dist/sub"]) == ("dist", "out")
    assert archive_roots(["dist/*.whl", "*.tar.gz"]) == ("",)
    assert archive_roots(["**/*.so"]) == ("",)
    assert (archive_path("dist"), archive_path("")) == ("/workspace/dist", "/workspace")


# --- collecting -----------------------------------------------------------


def test_selected_files_are_written_and_digested_sorted_by_path(tmp_path):
    digests = collect(tmp_path, ["dist/*.whl", "setup.py"], ("", dist_tree()))

    assert list(digests) == ["dist/a-1.0.whl", "dist/b-1.0.whl", "setup.py"]
    assert digests["dist/a-1.0.whl"] == sha(b"wheel a")
    assert (tmp_path / "out" / "dist" / "b-1.0.whl").read_bytes() == b"wheel b"
    assert not (tmp_path / "out" / "dist" / "notes.txt").exists()


def test_a_matched_directory_stands_for_every_file_beneath_it(tmp_path):
    digests = collect(tmp_path, ["dist"], ("dist", Tree("dist").add_file("x", b"1").add_dir("y").add_file("y/z", b"2")))

    assert digests == {"dist/x": sha(b"1"), "dist/y/z": sha(b"2")}


def test_the_mapping_and_its_digest_do_not_depend_on_the_order_of_entries(tmp_path):
    forward = Tree().add_file("a.bin", b"A").add_file("b.bin", b"B")
    backward = Tree().add_file("b.bin", b"B").add_file("a.bin", b"A")

    first = collect(tmp_path / "1", ["*.bin"], ("", forward))
    second = collect(tmp_path / "2", ["*.bin"], ("", backward))

    assert first == second and list(first) == list(second)
    assert manifest_digest(first) == manifest_digest(dict(reversed(list(second.items()))))
    assert manifest_digest(first) != manifest_digest({"a.bin": sha(b"A"), "b.bin": sha(b"other")})


def test_archives_of_several_roots_are_read_as_one_workspace(tmp_path):
    digests = collect(
        tmp_path, ["dist/*.whl", "out/app.bin"],
        ("dist", Tree("dist").add_file("a.whl", b"a")), ("out", Tree("out").add_file("app.bin", b"app")),
    )

    assert digests == {"dist/a.whl": sha(b"a"), "out/app.bin": sha(b"app")}


def test_a_pattern_that_matches_no_file_is_an_error_naming_every_such_pattern(tmp_path):
    reason = collect_refused(tmp_path, ["dist/*.whl", "dist/*.exe", "build/*"], ("", dist_tree()))

    assert reason == "artifacts[1] 'dist/*.exe' matched no file; artifacts[2] 'build/*' matched no file"


def test_an_empty_directory_matches_no_file(tmp_path):
    assert collect_refused(tmp_path, ["dist"], ("dist", Tree("dist"))) == "artifacts[0] 'dist' matched no file"


def test_a_selected_symbolic_link_is_refused_never_followed(tmp_path):
    tree = Tree().add_dir("dist").add_file("dist/a.whl", b"a").add_link("dist/etc.whl", "/etc/passwd")

    reason = collect_refused(tmp_path, ["dist/*.whl"], ("", tree))

    assert reason == (
        "artifacts: dist/etc.whl is a symbolic link: only regular files are artifacts, and links are not followed"
    )


def test_a_symbolic_link_on_a_patterns_way_is_refused(tmp_path):
    # The engine's archive of /workspace/dist is then the link alone.
    link = Tree("dist", root_dir=False).add_link("", "/usr/lib")

    reason = collect_refused(tmp_path, ["dist/*.whl", "dist/sub/x"], ("dist", link))

    assert reason.startswith("artifacts: dist is a symbolic link:")


def test_an_unselected_symbolic_link_does_no_harm(tmp_path):
    tree = Tree().add_file("app.bin", b"x").add_link("current", "/etc")

    assert collect(tmp_path, ["app.bin"], ("", tree)) == {"app.bin": sha(b"x")}


@pytest.mark.parametrize(
    "kind, shown", [(tarfile.FIFOTYPE, "a fifo"), (tarfile.CHRTYPE, "a device"), (tarfile.BLKTYPE, "a device")]
)
def test_devices_and_fifos_are_refused(tmp_path, kind, shown):
    tree = Tree().add_dir("out").add_file("out/a", b"a").add("out/b", kind)

    assert collect_refused(tmp_path, ["out"], ("", tree)).startswith(f"artifacts: out/b is {shown}:")


def test_the_first_refused_entry_by_path_is_named_whatever_the_order(tmp_path):
    tree = Tree().add_dir("out").add_link("out/z", "/z").add_link("out/a", "/a").add("out/m", tarfile.FIFOTYPE)

    reason = collect_refused(tmp_path, ["out/*"], ("", tree))

    assert reason == (
        "artifacts: out/a is a symbolic link: only regular files are artifacts, and links are not followed "
        "(2 more such entries)"
    )


def test_a_hard_link_to_an_artifact_is_the_same_file(tmp_path):
    tree = Tree().add_dir("dist").add_file("dist/a", b"same").add_link("dist/b", "workspace/dist/a", tarfile.LNKTYPE)

    digests = collect(tmp_path, ["dist/*"], ("", tree))

    assert digests == {"dist/a": sha(b"same"), "dist/b": sha(b"same")}
    assert (tmp_path / "out" / "dist" / "b").read_bytes() == b"same"


def test_a_hard_link_to_a_file_that_is_not_an_artifact_is_refused(tmp_path):
    tree = Tree().add_file("secret", b"s").add_dir("dist").add_link("dist/b", "workspace/secret", tarfile.LNKTYPE)

    reason = collect_refused(tmp_path, ["dist/*"], ("", tree))

    assert reason.startswith("artifacts: dist/b is a hard link to secret, which is not an artifact:")


def test_a_name_outside_the_character_set_is_refused_shown_escaped(tmp_path):
    tree = Tree().add_dir("dist").add_file("dist/a b\n.whl", b"x")

    reason = collect_refused(tmp_path, ["dist/*.whl"], ("", tree))

    assert reason.startswith("artifacts: dist/a b\\n.whl: artifact paths may hold only letters, digits")


def test_more_bytes_than_the_limit_is_an_error(tmp_path):
    tree = Tree().add_file("a.bin", b"x" * 600).add_file("b.bin", b"y" * 600)

    assert collect_refused(tmp_path, ["*.bin"], ("", tree), max_bytes=1000) == (
        f"artifacts: more than {1000 / (1024 * 1024):g} MB in all"
    )
    assert collect(tmp_path / "fits", ["a.bin"], ("", Tree().add_file("a.bin", b"x" * 600)), max_bytes=1000)


def test_more_files_than_the_limit_is_an_error(tmp_path):
    tree = Tree()
    for index in range(4):
        tree.add_file(f"f{index}.bin", b"")

    assert collect_refused(tmp_path, ["*.bin"], ("", tree), max_files=3) == (
        "artifacts: 4 files, more than the limit of 3"
    )


def test_a_workspace_with_too_many_entries_to_search_is_an_error(tmp_path):
    tree = Tree()
    for index in range(20):
        tree.add_file(f"f{index}", b"")

    reason = collect_refused(tmp_path, ["**/*.whl"], ("", tree), max_entries=10)

    assert reason == "artifacts: more than 10 entries to search under /workspace; name the files more narrowly"


@pytest.mark.parametrize("name", ["elsewhere/x", "/dist/x", "dist/../x", "dist/./x"])
def test_an_entry_outside_the_archived_path_is_a_node_problem_not_a_verdict(tmp_path, name):
    # An honest engine never sends one: the node reports its own error, never a deterministic reason.
    collector = Collector(("dist/*",), tmp_path / "out", max_bytes=100)

    with pytest.raises(OSError):
        collector.add_archive(Tree("dist").add_raw(name).stream(), "dist")
    assert not (tmp_path / "x").exists()


def test_a_truncated_archive_is_a_node_problem(tmp_path):
    data = Tree().add_file("a.bin", b"x" * 5000).stream().getvalue()[:2048]
    collector = Collector(("a.bin",), tmp_path / "out", max_bytes=1 << 20)

    with pytest.raises(OSError):
        collector.add_archive(io.BytesIO(data), "")
