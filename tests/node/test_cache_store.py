"""Build caches without Docker: the key, the tar checks, storing and pruning."""

import hashlib
import io
import os
import tarfile

import pytest

from node.build.spec import CacheSpec
from node.build.caches import CacheStore, cache_key, key_file_digest
from node.build.cachetar import CacheRefused, check_cache_tar

ROOTS = ("/home/build/.cache/x", "/workspace/.tox")
MIB = 1024 * 1024


def write_tar(path, *members):
    """members: (name, kind, payload) with kind file, dir, symlink, hardlink, fifo, pax."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_a_tar_inside_the_cache_paths_is_accepted_and_says_which_paths_it_holds(tmp_path):
    tar = write_tar(
        tmp_path / "c.tar",
        ("home/build/.cache/x/", "dir", None),
        ("home/build/.cache/x/f", "file", "data"),
        ("home/build/.cache/x/same", "symlink", "f"),
        ("home/build/.cache/x/again", "hardlink", "home/build/.cache/x/f"),
        ("home/build/.cache/x/up", "symlink", "../x/f"),
    )

    assert check_cache_tar(tar, ROOTS, MIB) == ("/home/build/.cache/x",)


@pytest.mark.parametrize(
    "members, reason",
    [
        ([("workspace/test.sh", "file", "evil")], "member 'workspace/test.sh' is outside the cache paths"),
        ([("home/build/.cache/xy", "file", "")], "member 'home/build/.cache/xy' is outside the cache paths"),
        ([("home/build/.cache/x/../../.profile", "file", "")], "contains '..'"),
        ([("home/build/.cache/x/l", "symlink", "/workspace")], "link '/home/build/.cache/x/l' points outside"),
        ([("home/build/.cache/x/l", "symlink", "../../../../etc/passwd")], "points outside the cache paths"),
        ([("home/build/.cache/x/h", "hardlink", "etc/passwd")], "hard link 'home/build/.cache/x/h' points outside"),
        ([("home/build/.cache/x/p", "fifo", None)], "is not a file, directory or link"),
        ([("home/build/.cache/x/l", "symlink", "l")], "too many levels of links"),
        # A link that looks inside but resolves, through another link, to the sources.
        ([("home/build/.cache/x/a", "symlink", "/workspace/src"),
          ("home/build/.cache/x/b", "symlink", "a/..")], "points outside the cache paths"),
        # A member written through a link of the same archive.
        ([("home/build/.cache/x/a", "symlink", "/workspace"),
          ("home/build/.cache/x/a/test.sh", "file", "evil")], "lies behind a link out of the cache paths"),
    ],
)
def test_a_tar_reaching_outside_the_cache_paths_is_refused(tmp_path, members, reason):
    tar = write_tar(tmp_path / "c.tar", *members)

    with pytest.raises(CacheRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_cache_tar(tar, ROOTS, MIB)


def test_pax_headers_and_garbage_and_oversize_are_refused(tmp_path):
    pax = tmp_path / "pax.tar"
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("home/build/.cache/x/" + "n" * 120)
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(CacheRefused, match="pax headers are not accepted"):
        check_cache_tar(pax, ROOTS, MIB)

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CacheRefused, match="not a readable tar"):
        check_cache_tar(garbage, ROOTS, MIB)

    big = write_tar(tmp_path / "big.tar", ("home/build/.cache/x/f", "file", "x" * (2 * MIB)))
    with pytest.raises(CacheRefused, match="larger than 1 MB"):
        check_cache_tar(big, ROOTS, MIB)


def test_the_key_covers_repository_image_paths_and_key_file_contents(tmp_path):
    (tmp_path / "requirements.txt").write_text("a==1\n")
    cache = CacheSpec(paths=("~/.cache/pip", ".tox"), key_files=("requirements.txt",))
    key = cache_key("example", "sha256:1", cache, tmp_path)

    assert key == cache_key("example", "sha256:1", CacheSpec((".tox", "~/.cache/pip"), cache.key_files), tmp_path)
    assert key != cache_key("other", "sha256:1", cache, tmp_path)
    assert key != cache_key("example", "sha256:2", cache, tmp_path)
    (tmp_path / "requirements.txt").write_text("a==2\n")
    assert key != cache_key("example", "sha256:1", cache, tmp_path)


def test_a_missing_or_linked_key_file_counts_as_empty(tmp_path):
    empty = hashlib.sha256(b"").hexdigest()
    (tmp_path / "secret").write_text("node's own file")
    (tmp_path / "link").symlink_to(tmp_path / "secret")

    assert key_file_digest(tmp_path, "missing.txt") == empty
    assert key_file_digest(tmp_path, "link") == empty
    assert key_file_digest(tmp_path, "secret") != empty


def store_cache(store, tmp_path, key, content="data"):
    incoming = store.incoming_path("example", f"b-{key[:4]}")
    write_tar(incoming, ("home/build/.cache/x/f", "file", content))
    return store.save("example", key, incoming, ROOTS)


def test_a_stored_cache_is_kept_with_its_digest_and_the_oldest_are_pruned(tmp_path):
    store = CacheStore(tmp_path, keep=2, max_bytes=MIB)
    keys = [character * 64 for character in "abc"]

    for age, key in enumerate(keys):
        line = store_cache(store, tmp_path, key)
        path = tmp_path / "caches" / "example" / f"{key}.tar"
        os.utime(path, ns=(age * 10**9, age * 10**9))

    assert line.startswith(f"cache saved key {'c' * 12} (") and line.endswith("2 kept for 'example'")
    left = sorted(path.name for path in (tmp_path / "caches" / "example").iterdir())
    assert left == [f"{key}.{suffix}" for key in keys[1:] for suffix in ("sha256", "tar")]


def test_a_refused_cache_is_not_stored(tmp_path):
    store = CacheStore(tmp_path, keep=2, max_bytes=MIB)
    incoming = store.incoming_path("example", "b1")
    write_tar(incoming, ("etc/passwd", "file", "root::0:0"))

    line = store.save("example", "a" * 64, incoming, ROOTS)

    assert line == "cache dropped: member 'etc/passwd' is outside the cache paths"
    assert list((tmp_path / "caches" / "example").iterdir()) == []


def test_restore_prefers_the_exact_key_then_the_newest_and_drops_a_changed_file(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64, "old")
    store_cache(store, tmp_path, "b" * 64, "new")
    os.utime(tmp_path / "caches" / "example" / f"{'a' * 64}.tar", ns=(0, 0))
    lines = []

    fallback = store.restore("example", "c" * 64, ROOTS, "build1", tmp_path / "ws", lines.append)
    hit = store.restore("example", "a" * 64, ROOTS, "build2", tmp_path / "ws", lines.append)
    with open(tmp_path / "caches" / "example" / f"{'b' * 64}.tar", "r+b") as file:
        file.seek(600)
        file.write(b"tampered")
    dropped = store.restore("example", "b" * 64, ROOTS, "build3", tmp_path / "ws", lines.append)

    assert (fallback.tar.name, fallback.exact) == ("build1.tar", False)
    assert (hit.tar.name, hit.exact, hit.paths) == ("build2.tar", True, ("/home/build/.cache/x",))
    assert lines[0].startswith(f"cache restore miss key {'c' * 12}, fallback to key {'b' * 12}, the newest of")
    assert lines[1].startswith(f"cache restore hit key {'a' * 12} (")
    assert lines[2] == f"cache dropped key {'b' * 12}: checksum mismatch (changed on disk)"
    # The next candidate is restored instead; the hit made it the newest.
    assert lines[3].startswith(f"cache restore miss key {'b' * 12}, fallback to key {'a' * 12}")
    assert dropped is not None
    assert not (tmp_path / "caches" / "example" / f"{'b' * 64}.tar").exists()
    store.release("build1")
    assert not fallback.tar.exists()


def test_a_restarted_node_sweeps_restore_links_and_half_copied_caches(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64)
    store.restore("example", "a" * 64, ROOTS, "killed-build", tmp_path / "ws", lambda line: None)
    half = store.incoming_path("example", "killed-build")
    half.write_bytes(b"half a tar")

    store.sweep()

    assert list((tmp_path / "cache-restores").iterdir()) == []
    assert sorted(path.suffix for path in (tmp_path / "caches" / "example").iterdir()) == [".sha256", ".tar"]


def test_a_branch_with_other_cache_paths_skips_the_others_caches_and_deletes_none(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64)  # caches of ROOTS, as the main branch declares them
    other_roots = ("/workspace/node_modules",)
    lines = []

    found = store.restore("example", "d" * 64, other_roots, "build1", tmp_path / "ws", lines.append)

    assert found is None
    assert lines[0] == (f"cache restore skips key {'a' * 12}: member 'home/build/.cache/x/f' is outside the cache "
                        "paths")
    assert (tmp_path / "caches" / "example" / f"{'a' * 64}.tar").exists()
    hit = store.restore("example", "a" * 64, ROOTS, "build2", tmp_path / "ws", lines.append)
    assert hit is not None and hit.exact
