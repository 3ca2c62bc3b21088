"""The large-repo scenario: a repository of 30,000 files and 224 MB in one commit, built
through pbft-ci and by the plain runs of bench/builds.py, whose control (four plain
`git clone && docker run` at once) pays for the same tree. Before each build, of either
kind, a push changes one file: each builds a commit it has not built before, as after a push.

The repository is made here, in one pack written by `git fast-import`, as a forge's
repository is packed. Its files are text: slices of one random pool of hexadecimal words,
each with a line of its own so that no two are the same object. Its build counts the files
(`sh test.sh`), so nearly all of what either side spends is getting the tree to the build.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import tempfile
from pathlib import Path

from bench.builds import compare_with_plain
from bench.stats import load_average
from harness.network import write_network

FILES, TOTAL_MB = 30_000, 224
QUICK_FILES, QUICK_TOTAL_MB = 3_000, 22
SPEC = b"image: pbft-ci/busybox:latest\ncommands:\n  - sh test.sh\n"
TEST_SH = b"echo \"$(find . -path ./.git -prune -o -type f -print | wc -l) files\"\n"
_POOL_BYTES = 4 * 1024 * 1024


def make_large_repository(path: Path, files: int, total_mb: int) -> Path:
    """A repository at `path` whose master holds `files` text files of `total_mb` MB in all,
    the spec and its test script, in one commit and one pack."""
    subprocess.run(["git", "init", "--quiet", "--initial-branch=master", "--template=", str(path)], check=True)
    rng = random.Random(224)
    pool = " ".join(f"{rng.getrandbits(32):08x}" for _ in range(_POOL_BYTES // 9)).encode()
    size = total_mb * 1024 * 1024 // files
    importer = subprocess.Popen(["git", "-C", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    assert importer.stdin is not None
    write = importer.stdin.write
    write(b"commit refs/heads/master\ncommitter bench <bench@pbft-ci.invalid> 1704067200 +0000\n"
          b"data 10\nlarge tree\n")
    for name, content in ((".pbft-ci.yml", SPEC), ("test.sh", TEST_SH)):
        write(b"M 644 inline %s\ndata %d\n%s\n" % (name.encode(), len(content), content))
    for index in range(files):
        start = rng.randrange(len(pool) - size)
        content = b"file %d\n" % index + pool[start:start + size]
        name = f"src/pkg{index % 100:02d}/mod{index // 100 % 30:02d}/file{index}.txt"
        write(b"M 644 inline %s\ndata %d\n%s\n" % (name.encode(), len(content), content))
    importer.stdin.close()
    if importer.wait() != 0:
        raise SystemExit("large-repo: git fast-import failed")
    return path


def push_change(path: Path, number: int) -> None:
    """A commit on master that changes one of its files, as a push does: each build, the
    pbft-ci one and the plain ones alike, builds a commit its checkouts have not seen."""
    name = f"src/pkg{number % 100:02d}/mod00/file{number % 100}.txt"
    content = b"file changed by push %d\n" % number
    importer = subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet"], check=False,
        input=b"commit refs/heads/master\ncommitter bench <bench@pbft-ci.invalid> %d +0000\ndata 5\npush\n"
              b"from refs/heads/master^0\nM 644 inline %s\ndata %d\n%s\n"
              % (1704067200 + number, name.encode(), len(content), content),
    )
    if importer.returncode != 0:
        raise SystemExit("large-repo: git fast-import failed")


def large_repo(args) -> dict:
    files, total_mb = (QUICK_FILES, QUICK_TOTAL_MB) if args.quick else (FILES, TOTAL_MB)
    rounds = 1 if args.quick else args.rounds
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="pbft-ci-bench-large-") as scratch:
        root = Path(scratch)
        repository = make_large_repository(root / "large", files, total_mb)
        config_path = write_network(root, repositories={"large": str(repository)})
        pushes = itertools.count(1)
        report = compare_with_plain(root, repository, config_path, rounds,
                                    push=lambda: push_change(repository, next(pushes)))
    return {"scenario": "large-repo", "project": f"{files:,} files, {total_mb} MB in one commit",
            "image": "pbft-ci/busybox", "load_average_at_start": load, **report}
