"""The deployment files of deploy/: systemd units that systemd accepts and that run the
commands of docs/operations.md, and a compose file consistent with its network YAML whose key ceremony
works. (Neither systemd as PID 1 nor docker compose is on the project's CI machines: the
units are checked with `systemd-analyze verify` and by running their commands, the compose
file by reading it and by running its `keys` service's script.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.config import load_config
from tests.support.readme import code_blocks, section

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALL_ROOT = "/opt/pbft-ci"  # where the units expect the repository
ETC = "/etc/pbft-ci"
DOCS_SECTION = "One node per host"


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, **options)


def unit_settings(name: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, keys that repeat with all their values."""
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def readme_command(script: str) -> list[str]:
    """The `.venv/bin/python SCRIPT --config ...` line of "One node per host" (docs/operations.md)."""
    lines = [shlex.split(line, comments=True) for block in code_blocks(section(DOCS_SECTION), "sh")
             for line in block.splitlines() if line.startswith(".venv/bin/python ")]
    matches = [argv for argv in lines if argv[1:3] == [script, "--config"]]
    assert len(matches) == 1, (script, matches)
    return matches[0]


UNIT_COMMANDS = [("pbft-ci-node@.service", "node/index.py", "2"), ("pbft-ci-client.service", "client/index.py", "")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit, instance", [("pbft-ci-node@.service", "pbft-ci-node@2.service"),
                                            ("pbft-ci-client.service", "pbft-ci-client.service")])
def test_systemd_accepts_the_units_without_a_warning(tmp_path, unit, instance):
    # systemd checks that ExecStart's program exists: point it at this checkout.
    (tmp_path / instance).write_text((UNITS / unit).read_text().replace(INSTALL_ROOT, str(REPO_ROOT)))
    result = run(["systemd-analyze", "verify", "--man=no", str(tmp_path / instance)])
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings: none may name the unit.
    warnings = [line for line in result.stderr.splitlines() if instance in line or str(tmp_path) in line]
    assert not warnings, result.stderr


@pytest.mark.parametrize("unit, script, instance", UNIT_COMMANDS)
def test_the_units_run_the_readmes_commands_which_the_clis_accept(tmp_path, unit, script, instance):
    settings = unit_settings(unit)
    (exec_start,) = settings["ExecStart"]
    argv = shlex.split(exec_start.replace("%i", instance))
    assert settings["WorkingDirectory"] == [INSTALL_ROOT]
    on_host = [word.removeprefix(INSTALL_ROOT + "/") for word in argv]
    expected = readme_command(script)
    if instance:
        expected[expected.index("--id") + 1] = instance
    assert on_host == expected, (on_host, expected)

    # Every option is one the command line knows: with a configuration that does not exist,
    # the command gets as far as reading it (a usage error would say "usage:").
    local = [str(tmp_path / "absent.yaml") if word == f"{ETC}/network.yaml" else word.replace(INSTALL_ROOT, str(REPO_ROOT))
             for word in argv]
    result = run(local, cwd=REPO_ROOT)
    assert result.returncode == 2 and "cannot read" in result.stderr and "usage:" not in result.stderr, result


@pytest.mark.parametrize("unit", ["pbft-ci-node@.service", "pbft-ci-client.service"])
def test_the_units_folders_are_the_readmes_data_and_log_folders_and_the_rest_is_read_only(unit):
    settings = unit_settings(unit)
    network = yaml.safe_load(code_blocks(section(DOCS_SECTION), "yaml")[0])
    assert "/var/lib/" + settings["StateDirectory"][0] == network["data_dir"]
    assert "/var/log/" + settings["LogsDirectory"][0] == network["log_dir"]
    for key, value in {"User": "pbft-ci", "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "Restart": "on-failure", "CapabilityBoundingSet": ""}.items():
        assert settings[key] == [value], (key, settings.get(key))
    # Only the node talks to the Docker engine: its group is root on the host.
    assert settings.get("SupplementaryGroups") == (["docker"] if unit.startswith("pbft-ci-node") else None)


# --- compose -------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_network():
    return load_config(DEPLOY / "compose-network.yaml", require_keys=False, read_secrets=False)


def test_compose_runs_each_node_of_its_network_with_only_its_own_key():
    services = compose()["services"]
    config = compose_network()
    assert set(services) == {"keys", config.clients[0].host} | {node.host for node in config.nodes}
    for node in config.nodes:
        service = services[node.host]
        assert service["command"] == [".venv/bin/python", "node/index.py", "--config", f"{ETC}/network.yaml",
                                      "--id", str(node.id)]
        volumes = service["volumes"]
        assert f"./compose-network.yaml:{ETC}/network.yaml:ro" in volumes
        assert [v for v in volumes if v.split(":")[1] == f"{ETC}/keys"] == [f"node{node.id}-key:{ETC}/keys:ro"]
        # The engine mounts files of the node's data folder into builds: same path inside and out.
        data = config.data_dir / f"node-{node.id}"
        assert f"{data}:{data}" in volumes
        assert "/var/run/docker.sock:/var/run/docker.sock" in volumes
        (repository,) = [v.split(":") for v in volumes if v.split(":")[1] == config.repositories[0].url]
        assert (DEPLOY / repository[0]).resolve() == REPO_ROOT / "data" / "example-repo"
        assert service["user"] == "root" and service["depends_on"]["keys"]["condition"] == \
            "service_completed_successfully"

    client = services[config.clients[0].host]
    assert client["user"] == "pbft-ci"
    assert client["command"] == [".venv/bin/python", "client/index.py", "--config", f"{ETC}/network.yaml"]
    port = config.clients[0].port
    assert client["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert not any("docker.sock" in v for v in client["volumes"])
    assert [v for v in client["volumes"] if v.split(":")[1] == f"{ETC}/keys"] == [f"client-key:{ETC}/keys:ro"]
    assert f"client-data:{config.data_dir}" in client["volumes"]


def test_the_compose_image_is_built_from_what_the_repository_has():
    build = compose()["services"]["keys"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert context == REPO_ROOT and dockerfile.exists()
    copied = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")]
    allowed = {line[1:].rstrip("/") for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert copied and all((context / source).exists() and source in allowed for source in copied), (copied, allowed)
    # Every package of this repository that a copied package imports is copied with it (the
    # scripts folder is copied for its set-up commands; the benchmarks it also holds are not).
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    needed = {
        name.split(".")[0]
        for source in copied if (context / source / "__init__.py").exists()
        for module in (context / source).rglob("*.py")
        for name in re.findall(r"^\s*(?:from|import) ([\w.]+)", module.read_text(), re.MULTILINE)
    } & packages
    assert needed <= set(copied), sorted(needed - set(copied))


def test_the_compose_key_ceremony_gives_each_container_its_own_key_once(tmp_path):
    """The `keys` service's script, run here with its volumes as folders, twice; then each
    container's view of /etc/pbft-ci passes `nodekey.py check`."""
    services = compose()["services"]
    config = compose_network()
    keys = services["keys"]
    (script,) = [part for part in keys["command"] if "\n" in part]
    # The container's file system, as folders here: each mount point a link to its volume.
    root = tmp_path / "root"
    for volume in keys["volumes"]:
        name, target = volume.split(":")
        (tmp_path / "volumes" / name).mkdir(parents=True)
        (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / target.lstrip("/")).symlink_to(tmp_path / "volumes" / name)
    # Every absolute path of the script is under one of the mount points' top folders; put
    # them under `root`, and make sure none is left that would write to this machine's /.
    tops = "|".join(sorted({volume.split(":")[1].split("/")[1] for volume in keys["volumes"]}))
    outside = re.compile(rf"(?<![\w.-])/({tops})\b")
    script = outside.sub(lambda match: f"{root}{match[0]}", script.replace("$$", "$"))
    left = {path for path in re.findall(r"(?<![\w.$}-])(/[\w./-]*)", script) if not path.startswith(str(root))}
    assert left <= {"/dev/null"}, left
    # There is no pbft-ci user here to give the client's files to.
    script = "chown() { :; }\n" + script

    first = run(["sh", "-euc", script], cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr
    made = {path: path.read_bytes() for path in (tmp_path / "volumes").rglob("*") if path.is_file()}
    again = run(["sh", "-euc", script], cwd=REPO_ROOT)
    assert again.returncode == 0, again.stderr
    assert {path: path.read_bytes() for path in made} == made  # nothing replaced

    def etc_of(service: str) -> Path:
        """/etc/pbft-ci as the service's container sees it, from its volumes."""
        etc = tmp_path / "etc" / service
        etc.mkdir(parents=True)
        for volume in services[service]["volumes"]:
            source, target = volume.split(":")[:2]
            if target.startswith(ETC + "/") and source.startswith("."):
                # A copy: the loader resolves paths against the folder the YAML really is in.
                shutil.copy(DEPLOY / source, etc / target[len(ETC) + 1:])
            elif target.startswith(ETC + "/"):
                (etc / target[len(ETC) + 1:]).symlink_to(tmp_path / "volumes" / source)
        return etc

    for node in config.nodes:
        checked = run([sys.executable, "scripts/nodekey.py", "check", str(etc_of(node.host) / "network.yaml"),
                       "--node", str(node.id)], cwd=REPO_ROOT)
        assert checked.returncode == 0 and "ok:" in checked.stdout and "note:" not in checked.stdout, checked
    client = config.clients[0]
    checked = run([sys.executable, "scripts/nodekey.py", "check", str(etc_of(client.host) / "network.yaml"),
                   "--client", client.name], cwd=REPO_ROOT)
    assert checked.returncode == 0 and "ok:" in checked.stdout, checked  # its token file included
