#!/usr/bin/env python3
"""Check a `.pbft-ci.yml` before you push it, with exactly the rules and the words of the nodes.

    scripts/lint.py                      # ./.pbft-ci.yml
    scripts/lint.py ci/.pbft-ci.yml      # any paths
    scripts/lint.py --matrix             # and each combination of its matrix as its own build

A spec every node would take prints `PATH: ok`. One they would refuse prints `PATH: refused`
and, on the next line, the reason each node would sign for the build's `error` verdict, to
the byte (builder/plan/spec.py reads the file here as a node reads it). Exit 0 when every
spec is taken, 1 when one is refused, 2 when a file cannot be read.

It needs no network, no Docker and no keys. What depends on a network's own settings is not
known here: `user: root` where the network does not allow root builds, `artifacts:` where it
keeps none, and images its engines lack.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from builder.plan.spec import MAX_SPEC_BYTES, SPEC_FILE, parse_build_spec, spec_matrix  # noqa: E402
from pbft.build import combination_label  # noqa: E402
from shared.boundedread import read_at_most  # noqa: E402


def read_spec(path: Path) -> bytes:
    """The file's bytes as a node reads them: a spec larger than the limit is refused by its
    size, so more than that is never read. OSError when it cannot be read, and when it is no
    regular file: a FIFO would hold the reading until something wrote to it, a device might
    never end."""
    return read_at_most(path, MAX_SPEC_BYTES + 1)


def included(root: Path, name: str) -> bytes | None:
    """A file the spec includes, as a node reads it at the commit: a regular file (no link on
    its way from the repository's root, which is the spec's folder), at most MAX_SPEC_BYTES."""
    path = root
    for part in name.split("/"):
        path = path / part
        if path.is_symlink():
            return None
    try:
        content = read_spec(path)
    except OSError:
        return None
    return content if len(content) <= MAX_SPEC_BYTES else None


def verdicts(path: Path, text: bytes, matrix: bool) -> list[tuple[str, str | None]]:
    """(what was checked, the nodes' reason, or None when they take it): the spec, and with
    `matrix` each combination's own build, which is refused alone when the spec is for some.
    The files it includes are read beside it, its folder taken for the repository's root."""
    found: list[tuple[str, str | None]] = []
    read = functools.partial(included, path.parent)
    try:
        parse_build_spec(text, read=read)
        found.append((str(path), None))
    except ValueError as refused:
        found.append((str(path), str(refused)))
    try:
        combinations = spec_matrix(text, read) if matrix else ()
    except ValueError:
        combinations = ()  # the matrix itself is refused: the spec's reason says why
    for combination in combinations:
        label = f"{path} [{combination_label(combination)}]"
        try:
            parse_build_spec(text, combination, read)
            found.append((label, None))
        except ValueError as refused:
            found.append((label, str(refused)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=f"Check {SPEC_FILE} files with the nodes' own rules and words, before you push them: "
                    "no network, Docker or keys needed.")
    parser.add_argument("paths", nargs="*", type=Path, default=[Path(SPEC_FILE)], metavar="PATH",
                        help=f"the specs to check (default: ./{SPEC_FILE})")
    parser.add_argument("--matrix", action="store_true",
                        help="also check each combination of a spec's matrix as its own build, one line each")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        if path.is_symlink():
            # A node never follows a link out of its checkout (builder/workspace/fetch.py).
            checked = [(str(path), f"{SPEC_FILE} must be a regular file")]
        else:
            try:
                checked = verdicts(path, read_spec(path), args.matrix)
            except OSError as error:
                print(f"{path}: cannot be read: {error.strerror}", file=sys.stderr)
                status = 2
                continue
        for what, reason in checked:
            if reason is None:
                print(f"{what}: ok")
            else:
                print(f"{what}: refused\n{reason}")
                status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
