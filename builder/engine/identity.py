"""Who the build is inside its container: a passwd and group entry and a home; and the
/etc/hosts of a container the engine gives no network at all.

Tools look the running uid up in /etc/passwd (`id -un`, `getpass.getuser()`,
git's committer identity, ssh's ~/.ssh, pip's cache) and many give up when it
has no entry. The build's root file system is read-only, so the entry cannot
be added at run time: each node makes passwd and group files per image and
build user, derived from the image's own, and they are mounted read-only
over /etc/passwd and /etc/group.

A build without a network is created with networking disabled
(`builder.engine.sandbox.host_config`): the engine then sets up no network
sandbox for it, which costs it about half the CPU of such a container's
start, and writes no /etc/hosts. The volume holds the one the engine writes
for network "none" (`HOSTS`), so that `localhost` resolves as it does there.

The files live in a volume on the build's own engine, written through the
Docker API, so that this works whether the engine runs on the node's machine
or elsewhere (`build.docker_host`): a bind mount names a path on the engine's
machine, and the volume's mount point is such a path, while the node's data
directory is not. The image's files are read as data with `get_archive`
from a container that is created and never started; nothing from the image
runs on the node.

The volumes belong to one executor (its labels): it removes them when it
closes, the next start of its node sweeps what a killed one left, and a
volume removed meanwhile (`docker volume prune` sees no container using it:
the files are bind-mounted, not the volume) is made again for the next build.
"""

import io
import logging
import tarfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import docker
import docker.errors
from docker.types import Mount

from builder.plan.containerpaths import HOME_DIR

log = logging.getLogger(__name__)

BUILD_NAME = "build"
# Used when the image already gives the name "build" to another uid or gid,
# so that looking the name up never finds someone else.
FALLBACK_NAME = "pbft-ci-build"
# Real passwd files are a few kilobytes; an image is chosen by a repository's
# spec, so bound what a node reads from one.
MAX_FILE_BYTES = 1024 * 1024
# Where the reader container mounts the volume it fills; never seen by a build.
_FILL_DIR = "/pbft-ci-identity"
ROLE = "identity"
# Identities an executor keeps, the least recently used removed first: a Dockerfile build's
# image is new with every commit, and each image had a volume until the node stopped.
MAX_IDENTITIES = 64
# What the engine writes to /etc/hosts of a container on network "none": the loopback names.
HOSTS = (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         b"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


class IdentityError(Exception):
    """The image's passwd or group file cannot be used; the text is deterministic."""


@dataclass(frozen=True)
class BuildIdentity:
    """The generated files, as paths on the engine's machine, and the name the build user goes by."""

    passwd_source: str
    group_source: str
    user_name: str
    hosts_source: str

    def mounts(self, *, hosts: bool) -> list[Mount]:
        """The mounts over /etc; with `hosts`, for a container created with networking disabled,
        /etc/hosts too (the engine leaves it empty there)."""
        mounts = [
            Mount("/etc/passwd", self.passwd_source, type="bind", read_only=True),
            Mount("/etc/group", self.group_source, type="bind", read_only=True),
        ]
        if hosts:
            mounts.append(Mount("/etc/hosts", self.hosts_source, type="bind", read_only=True))
        return mounts

    def environment(self) -> dict[str, str]:
        return {"HOME": HOME_DIR, "USER": self.user_name, "LOGNAME": self.user_name}


@dataclass(frozen=True)
class _Made:
    volume: str
    identity: BuildIdentity


class Identities:
    """The identity files of each image and build user one executor builds with, on its engine.

    `labels` are the executor's (never a build's: the files outlive a build).
    Thread-safe: builds and the preparation of containers ask from their own threads.
    """

    def __init__(self, labels: dict[str, str], keep: int = MAX_IDENTITIES):
        self._labels = dict(labels)
        self._made: OrderedDict[tuple[str, int, int], _Made] = OrderedDict()
        self._keep = keep
        self._guard = threading.Lock()

    def get(self, client: docker.DockerClient, *, image_id: str, uid: int, gid: int) -> BuildIdentity:
        """The identity for `uid:gid` in the image, made on first use and again if its volume went.

        Past `keep` identities the least recently asked for goes, with its volume. A container
        is created right after its identity is asked for (and a later one asks again), so an
        identity that goes is one no container is about to mount; one that runs keeps the
        files it has bind-mounted."""
        key = (image_id, uid, gid)
        with self._guard:
            made = self._made.get(key)
            if made is not None and _exists(client, made.volume):
                self._made.move_to_end(key)
                return made.identity
            made = self._make(client, image_id, uid, gid)
            self._made[key] = made
            self._made.move_to_end(key)
            while len(self._made) > self._keep:
                _, dropped = self._made.popitem(last=False)
                try:
                    _remove_volume(client.volumes.get(dropped.volume))
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError:
                    # The executor's close removes it with the rest of its label.
                    log.warning("could not remove identity volume %s", dropped.volume, exc_info=True)
            return made.identity

    def remove_all(self, client: docker.DockerClient) -> None:
        """Remove every identity volume of this executor (at close: no build uses them any more)."""
        with self._guard:
            self._made.clear()
            labels = [f"{name}={value}" for name, value in {**self._labels, "pbft-ci.role": ROLE}.items()]
            for volume in client.volumes.list(filters={"label": labels}):
                _remove_volume(volume)

    def _make(self, client, image_id: str, uid: int, gid: int) -> _Made:
        volume = client.volumes.create(
            name=f"pbft-ci-identity-{uuid.uuid4().hex}", driver="local",
            labels={**self._labels, "pbft-ci.role": ROLE},
        )
        try:
            # The command is never run; it only satisfies images without a CMD.
            reader = client.containers.create(
                image_id, ["/nonexistent"], network_mode="none",
                labels={**self._labels, "pbft-ci.role": "identity-reader"},
                mounts=[Mount(_FILL_DIR, volume.name, type="volume", no_copy=True)],
            )
            try:
                image_passwd, image_group = _read_file(reader, "/etc/passwd"), _read_file(reader, "/etc/group")
                passwd, user_name = passwd_with_build_user(image_passwd, uid, gid)
                group = group_with_build_group(image_group, gid)
                reader.put_archive(_FILL_DIR, _archive({"passwd": passwd, "group": group, "hosts": HOSTS}))
            finally:
                reader.remove(force=True)
            volume.reload()
            mountpoint = volume.attrs["Mountpoint"]
        except BaseException:
            _remove_volume(volume)
            raise
        return _Made(volume.name, BuildIdentity(f"{mountpoint}/passwd", f"{mountpoint}/group", user_name,
                                                   f"{mountpoint}/hosts"))


def passwd_with_build_user(image_passwd: bytes | None, uid: int, gid: int) -> tuple[bytes, str]:
    """The image's passwd with an entry for `uid` whose home is HOME_DIR; and that entry's name.

    An image without a passwd gets one with root and the build user. When the
    image already has the uid, its name is kept and only its home directory
    is replaced: the image's own home lies on the read-only root, and ssh
    and others take the home from the passwd entry, not from $HOME.
    """
    if image_passwd is None:
        image_passwd = b"root:x:0:0:root:/root:/bin/sh\n"
    lines = _lines(image_passwd)
    for index, fields in enumerate(line.split(b":") for line in lines):
        if len(fields) == 7 and fields[2] == str(uid).encode():
            fields[5] = HOME_DIR.encode()
            lines[index] = b":".join(fields)
            return _text(lines), fields[0].decode(errors="replace")
    name = _free_name(lines)
    lines.append(f"{name}:x:{uid}:{gid}:pbft-ci build:{HOME_DIR}:/bin/sh".encode())
    return _text(lines), name


def group_with_build_group(image_group: bytes | None, gid: int) -> bytes:
    """The image's group file with a group for `gid` when it has none."""
    if image_group is None:
        image_group = b"root:x:0:\n"
    lines = _lines(image_group)
    if any(len(fields) == 4 and fields[2] == str(gid).encode() for fields in (line.split(b":") for line in lines)):
        return _text(lines)
    lines.append(f"{_free_name(lines)}:x:{gid}:".encode())
    return _text(lines)


def _lines(text: bytes) -> list[bytes]:
    return [line for line in text.split(b"\n") if line]


def _text(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _free_name(lines: list[bytes]) -> str:
    taken = {line.split(b":", 1)[0] for line in lines}
    return BUILD_NAME if BUILD_NAME.encode() not in taken else FALLBACK_NAME


def _read_file(container, path: str) -> bytes | None:
    """A regular file's bytes; None when it is missing or not a regular file (a link is not followed)."""
    try:
        stream, stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    if stat.get("size", 0) > MAX_FILE_BYTES:
        raise IdentityError(f"image {path} is larger than {MAX_FILE_BYTES} bytes")
    archive = io.BytesIO()
    for chunk in stream:
        archive.write(chunk)
        if archive.tell() > MAX_FILE_BYTES + 64 * 1024:
            raise IdentityError(f"image {path} is larger than {MAX_FILE_BYTES} bytes")
    archive.seek(0)
    with tarfile.open(fileobj=archive) as tar:
        member = next(iter(tar), None)
        if member is None or not member.isfile():
            return None
        return tar.extractfile(member).read()


def _archive(files: dict[str, bytes]) -> bytes:
    """A tar of `files`, owned by root and readable by all: the build user reads them through the mounts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _exists(client, volume_name: str) -> bool:
    try:
        client.volumes.get(volume_name)
        return True
    except docker.errors.NotFound:
        return False


def _remove_volume(volume) -> None:
    try:
        volume.remove(force=True)
    except docker.errors.NotFound:
        pass
