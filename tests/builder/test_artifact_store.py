"""Where a node keeps its builds' artifacts: layout, retention per repository, leftovers, checked reads."""

import hashlib
import json
import os

import pytest

from builder.workspace.artifactstore import ArtifactStore, ArtifactUnavailable


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def keep(store: ArtifactStore, build_id: str, files: dict[str, bytes], repository="example", when_s=None):
    incoming = store.incoming(build_id)
    for path, data in files.items():
        (incoming / path).parent.mkdir(parents=True, exist_ok=True)
        (incoming / path).write_bytes(data)
    result = store.store(
        repository=repository, build_id=build_id, commit="a" * 40, incoming=incoming,
        digests={path: sha(data) for path, data in files.items()},
    )
    if when_s is not None:
        # Stored at a time of the test's choosing, so that the order does not hang on the clock's resolution.
        os.utime(store_dir(store, repository, build_id), (when_s, when_s))
    return result


def store_dir(store: ArtifactStore, repository: str, build_id: str):
    return store._root / repository / build_id


def test_stored_files_and_their_manifest(tmp_path):
    store = ArtifactStore(tmp_path, keep=3)

    sizes, kept = keep(store, "c-1", {"dist/a.whl": b"aa", "b.txt": b"b"})

    assert (sizes, kept) == ({"dist/a.whl": 2, "b.txt": 1}, 1)
    directory = tmp_path / "artifacts" / "example" / "c-1"
    assert (directory / "files" / "dist" / "a.whl").read_bytes() == b"aa"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest == {
        "build": "c-1", "repository": "example", "commit": "a" * 40,
        "artifacts": {"b.txt": sha(b"b"), "dist/a.whl": sha(b"aa")}, "sizes": {"b.txt": 1, "dist/a.whl": 2},
    }
    assert list(manifest["artifacts"]) == sorted(manifest["artifacts"])
    assert not list((tmp_path / "artifacts").glob(".incoming-*"))


def test_the_newest_builds_of_each_repository_are_kept(tmp_path):
    store = ArtifactStore(tmp_path, keep=2)
    for index in range(3):
        keep(store, f"c-{index}", {"a": b"x"}, when_s=1_000 + index)
    keep(store, "c-other", {"a": b"x"}, repository="other", when_s=500)

    assert keep(store, "c-3", {"a": b"x"}, when_s=2_000)[1] == 2

    assert sorted(path.name for path in (tmp_path / "artifacts" / "example").iterdir()) == ["c-2", "c-3"]
    assert store.manifest(["example", "other"], "c-other") is not None


def test_a_build_run_again_replaces_what_its_first_run_stored(tmp_path):
    store = ArtifactStore(tmp_path, keep=3)
    keep(store, "c-1", {"old.bin": b"first run"})

    keep(store, "c-1", {"new.bin": b"second run"})

    assert store.manifest(["example"], "c-1")["artifacts"] == {"new.bin": sha(b"second run")}
    assert not (store_dir(store, "example", "c-1") / "files" / "old.bin").exists()


def test_sweep_removes_half_copied_artifacts_only(tmp_path):
    store = ArtifactStore(tmp_path, keep=3)
    keep(store, "c-1", {"a": b"x"})
    (store.incoming("c-2") / "partial").write_bytes(b"half")

    store.sweep()

    assert not list((tmp_path / "artifacts").glob(".incoming-*"))
    assert store.manifest(["example"], "c-1") is not None


def test_a_read_returns_the_bytes_with_the_recorded_digest(tmp_path):
    store = ArtifactStore(tmp_path, keep=3)
    keep(store, "c-1", {"dist/a.whl": b"wheel"})

    artifact = store.read(["other", "example"], "c-1", "dist/a.whl")

    with artifact.file:
        assert (artifact.path, artifact.digest, artifact.size) == ("dist/a.whl", sha(b"wheel"), 5)
        assert artifact.file.read() == b"wheel"


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        {"artifacts": ["a"]},
        {"artifacts": {"../x": "sha256:" + "0" * 64}},
        {"artifacts": {"a/./b": "sha256:" + "0" * 64}},
        {"artifacts": {"a": "md5:00"}},
    ],
)
def test_a_manifest_that_is_not_well_formed_counts_as_none(tmp_path, manifest):
    store = ArtifactStore(tmp_path, keep=3)
    keep(store, "c-1", {"a": b"x"})
    path = store_dir(store, "example", "c-1") / "manifest.json"
    path.write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))

    assert store.manifest(["example"], "c-1") is None
    with pytest.raises(ArtifactUnavailable) as caught:
        store.read(["example"], "c-1", "a")
    assert caught.value.status == 404
