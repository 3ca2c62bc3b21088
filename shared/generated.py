"""Files written from the code (reference pages, schemas, the API document): a script's
`main` writes them, or with `--check` says which differ from what the code makes now, so
CI fails on a page left stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write_or_check(made: dict[Path, str], root: Path, script: str, description: str,
                   argv: list[str] | None = None) -> int:
    """Write each of `made` (path -> text), or with `--check` in `argv` return 1 naming the
    stale ones and `script` (the path from `root` that writes them)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs from what the code says")
    args = parser.parse_args(argv)
    if args.check:
        stale = [path for path, text in made.items() if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path.relative_to(root)} is out of date: run {script}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in made.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0
