"""Run a script under cProfile timed by the process's CPU clock, not the wall clock.

    python bench/cpuprofile.py OUT.prof SCRIPT [ARGS...]

`python -m cProfile` times calls by the wall clock: a node's fsync and its wait in
`epoll` then look like its costliest calls. What the benches compare is CPU per request,
so the nodes' profiles time what the process spends on the CPU. The profile is written
when the script ends (a node ends so on the SIGTERM the bench stops it with).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time
from pathlib import Path


def main() -> None:
    out, script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))  # as `python SCRIPT` would
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
