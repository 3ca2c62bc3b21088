"""A real image registry for tests: Debian's docker-registry (the distribution project's
reference registry) on a loopback port, storing under a temporary folder, stopped and
removed afterwards. The Docker engine talks plain HTTP to a registry on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from harness.network import free_port

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@contextmanager
def running_registry(root: Path, *, htpasswd: Path | None = None) -> Iterator[str]:
    """Start a registry under `root`; yield its host:port. With `htpasswd` (bcrypt entries),
    it asks for those credentials."""
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "pbft-ci-test", "path": str(htpasswd)}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(yaml.safe_dump(config))
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen([REGISTRY, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # 401: it answers, and asks for credentials
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root / "data", ignore_errors=True)
