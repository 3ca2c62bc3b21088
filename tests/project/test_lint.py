"""scripts/lint.py, run as a user runs it before pushing: a spec the nodes take is `ok`, one they
refuse is refused with the very reason a node signs, and it needs no network, Docker or keys."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from builder.plan.compile import Refused, plan_spec
from builder.plan.spec import MAX_SPEC_BYTES, SPEC_FILE
from builder.plan.triggers import Skips, Trigger
from shared.config import BuildConfig

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "scripts" / "lint.py"
GOOD = "image: pbft-ci/busybox:latest\ncommands:\n  - sh test.sh\n"
BAD = ("steps:\n  - name: lint\n    commands: [ruff check .]\n  - name: test\n    commands: [pytest]\n"
       "    depends_on: [lnt]\ntimeout_s: -1\nsurprise: true\n")
MATRIX = "image: pbft-ci/${V}:1\nmatrix: {V: [ok, UPPER]}\ncommands: [t]\n"


def lint(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LINT), *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"]})


def nodes_reason(text: str) -> str:
    """The reason a node's plan of the spec gives for its `error` verdict (builder/plan/compile.py)."""
    planned = plan_spec(SPEC_FILE, text.encode(), None, BuildConfig(), Skips(Trigger("push", "main"), "", None))
    assert isinstance(planned, Refused)
    return planned.reason


def test_a_spec_the_nodes_take_is_ok(tmp_path):
    (tmp_path / SPEC_FILE).write_text(GOOD)

    checked = lint(cwd=tmp_path)

    assert (checked.returncode, checked.stdout, checked.stderr) == (0, f"{SPEC_FILE}: ok\n", "")


def test_a_spec_the_nodes_refuse_is_refused_with_their_reason_to_the_byte(tmp_path):
    (tmp_path / SPEC_FILE).write_text(BAD)

    checked = lint(cwd=tmp_path)

    assert checked.returncode == 1 and checked.stderr == ""
    assert checked.stdout == f"{SPEC_FILE}: refused\n{nodes_reason(BAD)}\n"
    assert nodes_reason(BAD) == (
        ".pbft-ci.yml: unknown key 'surprise'; steps.test.depends_on: no step is named 'lnt'; "
        "timeout_s: must be a positive number")


def test_templates_are_applied_and_a_circle_of_them_is_refused_in_one_line(tmp_path):
    templates = "x-a: {extends: x-b, image: pbft-ci/busybox:latest}\nx-b: {retry: 1}\n"
    (tmp_path / SPEC_FILE).write_text(templates + "steps: [{name: s, commands: [t], extends: x-a}]\n")
    assert lint(cwd=tmp_path).stdout == f"{SPEC_FILE}: ok\n"

    circle = templates.replace("x-b: {retry: 1}", "x-b: {extends: x-a}")
    (tmp_path / SPEC_FILE).write_text(circle + "steps: [{name: s, commands: [t], extends: x-a}]\n")
    checked = lint(cwd=tmp_path)

    assert checked.returncode == 1
    assert checked.stdout == (f"{SPEC_FILE}: refused\n.pbft-ci.yml: steps.s.extends: the templates extend each "
                              "other in a circle: x-a -> x-b -> x-a\n")


def test_any_paths_are_checked_and_one_that_cannot_be_read_is_said_apart(tmp_path):
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "bad.yml").write_text(BAD)

    checked = lint("good.yml", "bad.yml", "absent.yml", cwd=tmp_path)

    assert checked.returncode == 2
    assert checked.stdout == f"good.yml: ok\nbad.yml: refused\n{nodes_reason(BAD)}\n"
    assert checked.stderr == "absent.yml: cannot be read: No such file or directory\n"


@pytest.mark.parametrize("make, kind", [
    (os.mkfifo, "a FIFO"), (os.mkdir, "a directory"), (lambda path: socket.socket(socket.AF_UNIX).bind(str(path)), "a socket"),
], ids=["a FIFO", "a directory", "a socket"])
def test_a_path_that_is_no_regular_file_is_refused_in_one_line_without_waiting_on_it(tmp_path, make, kind):
    make(tmp_path / "spec.yml")

    checked = lint("spec.yml", cwd=tmp_path)

    assert (checked.returncode, checked.stdout) == (2, "")
    assert checked.stderr == f"spec.yml: cannot be read: is {kind}, not a regular file\n"


def test_each_combination_of_a_matrix_is_its_own_build(tmp_path):
    (tmp_path / SPEC_FILE).write_text(MATRIX)

    checked = lint("--matrix", cwd=tmp_path)

    assert checked.returncode == 1
    assert checked.stdout.splitlines() == [
        f"{SPEC_FILE}: refused",
        ".pbft-ci.yml: image: is not an image reference (lowercase name[:tag][@sha256:digest]) (in V=UPPER)",
        f"{SPEC_FILE} [V=ok]: ok",
        f"{SPEC_FILE} [V=UPPER]: refused",
        ".pbft-ci.yml: image: is not an image reference (lowercase name[:tag][@sha256:digest])",
    ]


@pytest.mark.parametrize("make, reason", [
    (lambda path: path.write_bytes(b"#" * (MAX_SPEC_BYTES + 1)), f".pbft-ci.yml: larger than {MAX_SPEC_BYTES} bytes"),
    (lambda path: path.write_text("commands: [\n"), ".pbft-ci.yml: invalid YAML: while parsing a flow node"),
    (lambda path: path.symlink_to("/etc/passwd"), ".pbft-ci.yml must be a regular file"),
], ids=["too large", "not YAML", "a link"])
def test_what_a_node_refuses_before_reading_the_spec_is_refused_alike(tmp_path, make, reason):
    make(tmp_path / SPEC_FILE)

    checked = lint(cwd=tmp_path)

    assert checked.returncode == 1
    assert checked.stdout.splitlines()[0] == f"{SPEC_FILE}: refused"
    assert checked.stdout.splitlines()[1].startswith(reason)


def test_it_loads_neither_docker_nor_git(tmp_path):
    (tmp_path / SPEC_FILE).write_text(GOOD)
    probe = ("import runpy, sys\n"
             f"sys.argv = ['lint.py', {str(tmp_path / SPEC_FILE)!r}]\n"
             "try:\n"
             f"    runpy.run_path({str(LINT)!r}, run_name='__main__')\n"
             "except SystemExit as done:\n"
             "    print(done.code, sorted(name for name in ('docker', 'git', 'aiohttp') if name in sys.modules))\n")

    checked = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    assert checked.stdout.splitlines()[-1] == "0 []", checked.stdout + checked.stderr
