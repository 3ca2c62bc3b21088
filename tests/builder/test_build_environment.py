"""The environment every build gets for reproducible output, and how a prepared container's script carries it."""

import subprocess

from builder.engine.gate import exported
from builder.plan.civars import reproducible_environment


def test_the_environment_is_the_commit_time_utc_and_a_fixed_locale():
    assert reproducible_environment(1704067200) == {
        "SOURCE_DATE_EPOCH": "1704067200", "TZ": "UTC", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
    }


def test_a_commit_dated_before_1970_gets_zero_never_a_negative_epoch():
    # SOURCE_DATE_EPOCH is defined as a non-negative integer; git accepts older dates.
    assert reproducible_environment(-86400)["SOURCE_DATE_EPOCH"] == "0"


def run_sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", "-e", "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )


def test_exported_variables_reach_the_script_and_every_line_keeps_its_number():
    script = exported({"TZ": "UTC", "ODD": "a b 'c' $HOME"}, 'echo "$TZ|$ODD"\ntrue\nno-such-command-here')

    finished = run_sh(script)

    assert finished.stdout == "UTC|a b 'c' $HOME\n"
    # The shell reports the failing command at line 3, as the script was written.
    assert "3:" in finished.stderr and "no-such-command-here" in finished.stderr
    assert finished.returncode == 127


def test_without_an_environment_the_script_is_unchanged():
    assert exported({}, "make\nmake test") == "make\nmake test"
