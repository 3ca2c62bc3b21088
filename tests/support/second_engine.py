"""A second Docker engine for tests: its own dockerd, data root, exec root and sockets, in a temporary folder.

It listens on a unix socket and, given certificates, on TLS-verified tcp on
loopback (dockerd applies TLS to its tcp listeners only). `stop()` ends the
dockerd this module started (by its pid, never by name), unmounts whatever it
left mounted under its folder, and removes the folder. Only for tests that run
as root on a machine with `dockerd`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.tls

_ANSWER_S = 60.0
_STOP_S = 30.0


@dataclass(frozen=True)
class ServerTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass
class SecondEngine:
    root: Path
    process: subprocess.Popen
    storage_driver: str
    tcp_port: int | None = None
    tls: ServerTLS | None = None
    netns: str | None = None
    clients: list[docker.DockerClient] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def unix_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def client(self) -> docker.DockerClient:
        """A plain client over the unix socket, closed at stop()."""
        self.clients.append(docker.DockerClient(base_url=self.unix_host))
        return self.clients[-1]

    def log_tail(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-4000:]

    def restart(self) -> None:
        """Stop this dockerd as its service manager would (SIGTERM: it stops the containers
        it runs) and start it again on the same data root and sockets."""
        _end(self.process)
        restarted = _start(self.root, self.storage_driver, self.tls, self.tcp_port, self.netns)
        self.process = restarted.process
        if not _answers(self):
            raise RuntimeError("the second dockerd did not answer after its restart:\n" + self.log_tail())

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        _end(self.process)
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def start_second_engine(
    *, tls: ServerTLS | None = None, tcp_port: int | None = None, netns: str | None = None
) -> SecondEngine:
    """Start dockerd with overlay2, or vfs where overlay2 does not work; raise RuntimeError if neither answers.

    With `netns` (a namespace of `ip netns`) it runs in that network namespace,
    as if on another machine for networking, still reached through its unix socket.
    """
    problems = []
    for driver in ("overlay2", "vfs"):
        # Short: the unix socket paths of dockerd and its containerd must stay under 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="pbft-ci-engine-", dir="/tmp"))
        engine = _start(root, driver, tls, tcp_port, netns)
        try:
            if _answers(engine):
                return engine
            problems.append(f"{driver}: {engine.log_tail()}")
        except BaseException:
            engine.stop()
            raise
        engine.stop()
    raise RuntimeError("the second dockerd did not answer:\n" + "\n".join(problems))


def _start(root: Path, driver: str, tls: ServerTLS | None, tcp_port: int | None, netns: str | None) -> SecondEngine:
    command = [
        # Not `ip netns exec`, whose fresh /sys hides the cgroup mounts; nsenter
        # changes the network namespace only, and execs dockerd (the pid stays dockerd's).
        *(["nsenter", f"--net=/run/netns/{netns}"] if netns else []),
        "dockerd",
        "--host", f"unix://{root / 'docker.sock'}",
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "docker.pid"),
        "--bridge=none", "--iptables=false", "--ip-forward=false",
        "--storage-driver", driver,
    ]
    if tls is not None:
        command += [
            "--host", f"tcp://127.0.0.1:{tcp_port}",
            "--tlsverify", "--tlscacert", str(tls.ca_file), "--tlscert", str(tls.cert_file),
            "--tlskey", str(tls.key_file),
        ]
    with open(root / "dockerd.log", "ab") as log:
        # A session of its own: a Ctrl-C meant for pytest does not reach it before stop() does.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return SecondEngine(root, process, driver, tcp_port, tls, netns)


def _answers(engine: SecondEngine) -> bool:
    deadline = time.monotonic() + _ANSWER_S
    while time.monotonic() < deadline and engine.process.poll() is None:
        try:
            client = docker.DockerClient(base_url=engine.unix_host, timeout=5)
        except docker.errors.DockerException:
            time.sleep(0.2)
            continue
        try:
            # A driver that does not work here makes dockerd exit, or answer without it.
            return client.info()["Driver"] == engine.storage_driver
        finally:
            client.close()
    return False


def _end(process: subprocess.Popen) -> None:
    """SIGTERM lets dockerd stop its containerd and unmount; SIGKILL only if it does not within the deadline."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_S)


def _unmount_under(root: Path) -> None:
    """Lazily unmount every mount point under `root`, deepest first (overlay layers, netns files, shm)."""
    prefix = str(root) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def load_image(source: docker.DockerClient, target: docker.DockerClient, image: str, scratch: Path) -> None:
    """`docker save image | docker -H target load`, through a file."""
    archive = scratch / "image.tar"
    with open(archive, "wb") as file:
        for chunk in source.images.get(image).save(named=True):
            file.write(chunk)
    with open(archive, "rb") as file:
        target.images.load(file)
    archive.unlink()


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate; and a client
    certificate of another CA. Returns their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    def key_and_request(name: str, subject: str) -> None:
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", subject)

    def sign(name: str, ca: str, extensions: str) -> None:
        (folder / f"{name}.ext").write_text(extensions)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
                "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem", "-days", "1", "-subj", f"/CN=pbft-ci test {ca}")
    key_and_request("server", "/CN=127.0.0.1")
    sign("server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    for client, ca in (("client", "ca"), ("stranger", "other-ca")):
        key_and_request(client, f"/CN=pbft-ci test {client}")
        sign(client, ca, "extendedKeyUsage=clientAuth\n")
    for name in ("ca", "other-ca", "server", "client", "stranger"):
        paths[name] = folder / f"{name}.pem"
        paths[f"{name}-key"] = folder / f"{name}-key.pem"
    for key in folder.glob("*-key.pem"):
        os.chmod(key, 0o600)
    return paths
