"""Wait for processes just started to answer on their status URL, in one process for the whole
wait: a Python start per poll and per process (as the start scripts did) cost the machine more
than the processes being waited for had to spare on two cores.

    awaitstart.py [--seconds S] [--match-id] [--cafile FILE] --wait NAME URL PID [--wait ...]

Each process is up once GET URL answers a JSON object whose "pid" is PID (with --match-id,
whose "id" is NAME too): any other program holding the port answers HTTP as well. One line per
process on stdout, as it is known: `up NAME`, `exited NAME` (it ended, or is a zombie), or after
S seconds `silent NAME`. It exits 0 whatever it found: the caller reads the lines.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.request

POLL_S = 0.1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def answers(url: str, expected: dict, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            answer = json.load(response)
    except (OSError, ValueError):
        return False
    return isinstance(answer, dict) and all(answer.get(key) == value for key, value in expected.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--match-id", action="store_true", help='the answer\'s "id" must be NAME (a number)')
    parser.add_argument("--cafile", default="", help="CA file of the URLs' TLS certificates")
    parser.add_argument("--wait", nargs=3, action="append", metavar=("NAME", "URL", "PID"), default=[])
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    pending = {}
    for name, url, pid in args.wait:
        expected = {"pid": int(pid), **({"id": int(name)} if args.match_id else {})}
        pending[name] = (url, int(pid), expected)
    deadline = time.monotonic() + args.seconds
    while pending:
        for name, (url, pid, expected) in list(pending.items()):
            if not alive(pid):
                print(f"exited {name}", flush=True)
            elif answers(url, expected, context):
                print(f"up {name}", flush=True)
            else:
                continue
            del pending[name]
        if pending and time.monotonic() >= deadline:
            for name in pending:
                print(f"silent {name}", flush=True)
            return
        if pending:
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
