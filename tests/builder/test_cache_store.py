"""Build caches without Docker: the key, the tar checks, storing and pruning."""

import hashlib
import io
import json
import os
import tarfile

import pytest

from builder.plan.spec import CacheSpec
from builder.workspace.caches import CacheLookup, CacheScope, CacheStore, CacheWriter, cache_key, cache_scopes, key_file_digest
from builder.workspace.cachetar import CacheRefused, check_cache_tar

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


MASTER = CacheScope("branch", "master")


def scope_dir(tmp_path, scope=MASTER):
    return tmp_path / "caches" / "example" / scope.directory


def store_cache(store, tmp_path, key, content="data", scope=MASTER, build_id=None):
    build_id = build_id or f"b-{key[:4]}"
    incoming = store.incoming_path("example", scope, build_id)
    write_tar(incoming, ("home/build/.cache/x/f", "file", content))
    return store.save("example", scope, key, incoming, ROOTS, CacheWriter(build_id, "c0ffee" * 6 + "abcd", "push"))


def restore(store, tmp_path, key, build_id, lines, scopes=(MASTER,), roots=ROOTS):
    return store.restore(CacheLookup("example", scopes, key, roots), build_id, tmp_path / "ws", lines.append)


def test_a_stored_cache_is_kept_with_its_digest_and_writer_and_the_oldest_are_pruned(tmp_path):
    store = CacheStore(tmp_path, keep=2, max_bytes=MIB)
    keys = [character * 64 for character in "abc"]

    for age, key in enumerate(keys):
        line = store_cache(store, tmp_path, key)
        path = scope_dir(tmp_path) / f"{key}.tar"
        os.utime(path, ns=(age * 10**9, age * 10**9))

    assert line.startswith(f"cache saved key {'c' * 12} for branch 'master' (") and line.endswith("2 kept for it")
    left = sorted(path.name for path in scope_dir(tmp_path).iterdir())
    assert left == [f"{key}.{suffix}" for key in keys[1:] for suffix in ("json", "tar")]
    about = json.loads((scope_dir(tmp_path) / f"{keys[2]}.json").read_text())
    assert (about["scope"], about["build_id"], about["event"]) == ("branch 'master'", "b-cccc", "push")
    assert about["sha256"] == hashlib.sha256((scope_dir(tmp_path) / f"{keys[2]}.tar").read_bytes()).hexdigest()


def test_a_refused_cache_is_not_stored(tmp_path):
    store = CacheStore(tmp_path, keep=2, max_bytes=MIB)
    incoming = store.incoming_path("example", MASTER, "b1")
    write_tar(incoming, ("etc/passwd", "file", "root::0:0"))

    line = store.save("example", MASTER, "a" * 64, incoming, ROOTS, CacheWriter("b1", "0" * 40, "push"))

    assert line == "cache dropped: member 'etc/passwd' is outside the cache paths"
    assert list(scope_dir(tmp_path).iterdir()) == []


def test_restore_prefers_the_exact_key_then_the_newest_and_drops_a_changed_file(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64, "old")
    store_cache(store, tmp_path, "b" * 64, "new")
    os.utime(scope_dir(tmp_path) / f"{'a' * 64}.tar", ns=(0, 0))
    lines = []

    fallback = restore(store, tmp_path, "c" * 64, "build1", lines)
    hit = restore(store, tmp_path, "a" * 64, "build2", lines)
    with open(scope_dir(tmp_path) / f"{'b' * 64}.tar", "r+b") as file:
        file.seek(600)
        file.write(b"tampered")
    dropped = restore(store, tmp_path, "b" * 64, "build3", lines)

    assert (fallback.tar.name, fallback.exact, fallback.scope) == ("build1.tar", False, MASTER)
    assert (hit.tar.name, hit.exact, hit.paths) == ("build2.tar", True, ("/home/build/.cache/x",))
    assert lines[0].startswith(f"cache restore miss key {'c' * 12}, fallback to key {'b' * 12}, the newest of "
                               "branch 'master' (")
    assert lines[0].endswith(", saved by build b-bbbb (push) at commit c0ffeec0ffee")
    assert lines[1].startswith(f"cache restore hit key {'a' * 12} of branch 'master' (")
    assert lines[1].endswith("saved by build b-aaaa (push) at commit c0ffeec0ffee")
    assert lines[2] == f"cache dropped key {'b' * 12} of branch 'master': checksum mismatch (changed on disk)"
    # The next candidate is restored instead; the hit made it the newest.
    assert lines[3].startswith(f"cache restore miss key {'b' * 12}, fallback to key {'a' * 12}")
    assert dropped is not None
    assert not (scope_dir(tmp_path) / f"{'b' * 64}.tar").exists()
    store.release("build1")
    assert not fallback.tar.exists()


def test_a_restarted_node_sweeps_restore_links_half_copied_caches_and_caches_without_a_scope(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64)
    restore(store, tmp_path, "a" * 64, "killed-build", [])
    half = store.incoming_path("example", MASTER, "killed-build")
    half.write_bytes(b"half a tar")
    # The layout before scopes: anyone's build may have written these.
    (tmp_path / "caches" / "example" / f"{'e' * 64}.tar").write_bytes(b"old")
    (tmp_path / "caches" / "example" / f"{'e' * 64}.sha256").write_text("digest")

    store.sweep()

    assert list((tmp_path / "cache-restores").iterdir()) == []
    assert sorted(path.suffix for path in scope_dir(tmp_path).iterdir()) == [".json", ".tar"]
    assert [path.name for path in (tmp_path / "caches" / "example").iterdir()] == [MASTER.directory]


def test_a_branch_with_other_cache_paths_skips_the_others_caches_and_deletes_none(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    store_cache(store, tmp_path, "a" * 64)  # caches of ROOTS, as the main branch declares them
    other_roots = ("/workspace/node_modules",)
    lines = []

    found = restore(store, tmp_path, "d" * 64, "build1", lines, roots=other_roots)

    assert found is None
    assert lines[0] == (f"cache restore skips key {'a' * 12} of branch 'master': member 'home/build/.cache/x/f' is "
                        "outside the cache paths")
    assert (scope_dir(tmp_path) / f"{'a' * 64}.tar").exists()
    hit = restore(store, tmp_path, "a" * 64, "build2", lines)
    assert hit is not None and hit.exact


def test_scopes_follow_trust_a_pull_request_reads_its_base_and_a_branch_never_reads_a_pull_request():
    assert cache_scopes("push", "master", None) == (MASTER,)
    assert cache_scopes("cron", "master", None) == (MASTER,)
    assert cache_scopes("tag", "v1.0", None) == (CacheScope("tag", "v1.0"),)
    # A pull request's trust follows its checkout, whatever event its request names.
    for event in ("pull_request", "manual", "push"):
        assert cache_scopes(event, "master", "refs/pull/7/head") == (CacheScope("pull", "7"), MASTER)
    assert cache_scopes("pull_request", "main", "refs/merge-requests/3/head")[0] == CacheScope("pull", "3")
    assert not CacheScope("pull", "7").trusted and MASTER.trusted
    # A branch name is hashed into a file name of its own; two names never share one.
    assert "/" not in CacheScope("branch", "release/1.x").directory
    assert CacheScope("branch", "a").directory != CacheScope("tag", "a").directory


def test_a_pull_request_reads_its_base_branch_but_the_branch_never_reads_the_pull_request(tmp_path):
    store = CacheStore(tmp_path, keep=3, max_bytes=MIB)
    pull = cache_scopes("pull_request", "master", "refs/pull/7/head")
    store_cache(store, tmp_path, "a" * 64, "branch's", scope=MASTER)
    lines = []

    from_base = restore(store, tmp_path, "a" * 64, "pr-build", lines, scopes=pull)
    store_cache(store, tmp_path, "b" * 64, "planted", scope=pull[0])
    store.release("pr-build")
    branch_hit = restore(store, tmp_path, "b" * 64, "branch-build", lines)

    assert (from_base.scope, from_base.exact) == (MASTER, True)
    assert lines[0].startswith(f"cache restore hit key {'a' * 12} of branch 'master'")
    # The branch asks for the very key the pull request saved: it gets its own newest instead.
    assert (branch_hit.scope, branch_hit.exact) == (MASTER, False)
    assert lines[1].startswith(f"cache restore miss key {'b' * 12}, fallback to key {'a' * 12}, the newest of "
                               "branch 'master'")
    # The pull request's own cache comes first for it, the exact key before any fallback.
    store.release("branch-build")
    own = restore(store, tmp_path, "b" * 64, "pr-build-2", lines, scopes=pull)
    assert (own.scope, own.exact) == (pull[0], True)


def test_no_number_of_pull_requests_evicts_a_branch_cache(tmp_path):
    store = CacheStore(tmp_path, keep=1, max_bytes=MIB, scopes=2)
    clock = iter(range(1, 100))

    def store_cache(*args, scope, **kwargs):
        # Saves a second apart: a file's time may not tell ones made in the same instant apart.
        line = globals()["store_cache"](*args, scope=scope, **kwargs)
        for tar in scope_dir(tmp_path, scope).glob("*.tar"):
            os.utime(tar, ns=(next(clock) * 10**9,) * 2)
        return line

    store_cache(store, tmp_path, "a" * 64, scope=MASTER)
    lines = []

    saved = {}
    for number in range(1, 6):
        scope = CacheScope("pull", str(number))
        for key in ("b", "c", "d"):
            saved[number, key] = store_cache(store, tmp_path, key * 64, f"{number}{key}", scope=scope,
                                             build_id=f"pr{number}{key}")

    # A new pull request's first save drops the least recently used other pull request's scope.
    assert saved[2, "b"].endswith("1 kept for it")
    assert saved[3, "b"].endswith("1 kept for it; 1 least recently used scopes dropped")
    assert saved[3, "c"].endswith("1 kept for it")
    kept = sorted(path.name for path in (tmp_path / "caches" / "example").iterdir())
    assert kept == sorted([MASTER.directory, "pull-4", "pull-5"])
    assert restore(store, tmp_path, "a" * 64, "branch-build", lines).exact
    os.utime(scope_dir(tmp_path) / f"{'a' * 64}.tar", ns=(next(clock) * 10**9,) * 2)
    # Branch scopes are bounded the same way, among themselves.
    for name in ("x", "y"):
        store_cache(store, tmp_path, "f" * 64, scope=CacheScope("branch", name), build_id=f"push-{name}")
    kept = sorted(path.name for path in (tmp_path / "caches" / "example").iterdir())
    assert kept == sorted([CacheScope("branch", "x").directory, CacheScope("branch", "y").directory,
                           "pull-4", "pull-5"])
