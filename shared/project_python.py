"""Run a command under the project's own Python when it was started with another one.

`python3 node/index.py --help` from a plain shell finds none of the packages
the commands import (aiohttp, PyYAML, ...): scripts/setup.sh installs them
into .venv. Rather than fail with a traceback, the command runs again, with
the same arguments, under .venv/bin/python. This module imports only the
standard library, so that it works in any Python 3.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
# The top-level modules of requirements.txt's runtime packages that the commands import.
RUNTIME_MODULES = ("aiohttp", "Crypto", "nacl", "git", "docker", "yaml", "prometheus_client", "croniter",
                   "securesystemslib", "in_toto")


def use_project_python() -> None:
    """Return when this interpreter has every runtime package; else become .venv/bin/python
    running the same command line, or exit with one line saying how to make it."""
    missing = [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return
    python = VENV / "bin" / "python"
    # Never again into the same interpreter: a .venv without the packages cannot help itself.
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), *sys.argv])
    sys.exit(f"{sys.argv[0]}: this Python ({sys.executable}) lacks the project's packages ({', '.join(missing)}):"
             f" run ./scripts/setup.sh, which installs them into .venv, then .venv/bin/python {sys.argv[0]}")
