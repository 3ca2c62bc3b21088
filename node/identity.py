"""Who the build is inside its container: a passwd and group entry and a home.

Tools look the running uid up in /etc/passwd (`id -un`, `getpass.getuser()`,
git's committer identity, ssh's ~/.ssh, pip's cache) and many give up when it
has no entry. The build's root file system is read-only, so the entry cannot
be added at run time: each node writes passwd and group files per image and
build user, derived from the image's own, and they are bind-mounted read-only
over /etc/passwd and /etc/group.

The image's files are read as data with `get_archive` from a container that is
created and never started; nothing from the image runs on the host. A bind
mount names a path on the machine that runs the Docker engine, so this needs
the engine on the node's own machine (a remote engine would need the files
shipped to it, a later concern).
"""

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.types import Mount

HOME_DIR = "/home/build"
BUILD_NAME = "build"
# Used when the image already gives the name "build" to another uid or gid,
# so that looking the name up never finds someone else.
FALLBACK_NAME = "pbft-ci-build"
# Real passwd files are a few kilobytes; an image is chosen by a repository's
# spec, so bound what a node reads from one.
MAX_FILE_BYTES = 1024 * 1024


class IdentityError(Exception):
    """The image's passwd or group file cannot be used; the text is deterministic."""


@dataclass(frozen=True)
class BuildIdentity:
    """The generated files on this node and the name the build user goes by."""

    passwd_path: Path
    group_path: Path
    user_name: str

    def mounts(self) -> list[Mount]:
        return [
            Mount("/etc/passwd", str(self.passwd_path), type="bind", read_only=True),
            Mount("/etc/group", str(self.group_path), type="bind", read_only=True),
        ]

    def environment(self) -> dict[str, str]:
        return {"HOME": HOME_DIR, "USER": self.user_name, "LOGNAME": self.user_name}


def build_identity(
    client: docker.DockerClient, *, image_id: str, uid: int, gid: int, cache_dir: Path, labels: dict[str, str]
) -> BuildIdentity:
    """The identity files for `uid:gid` in the image, generated once per image id and cached."""
    directory = Path(cache_dir) / image_id.removeprefix("sha256:") / f"{uid}-{gid}"
    if not (directory / "passwd").is_file():
        image_passwd, image_group = _read_image_files(client, image_id, labels)
        passwd, user_name = passwd_with_build_user(image_passwd, uid, gid)
        group = group_with_build_group(image_group, gid)
        _publish(directory, {"passwd": passwd, "group": group, "user": user_name.encode()})
    return BuildIdentity(directory / "passwd", directory / "group", (directory / "user").read_text())


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


def _read_image_files(client, image_id: str, labels: dict[str, str]) -> tuple[bytes | None, bytes | None]:
    """The image's /etc/passwd and /etc/group (None when absent), from a container never started."""
    # The command is never run; it only satisfies images without a CMD.
    container = client.containers.create(
        image_id, ["/nonexistent"], network_mode="none", labels={**labels, "pbft-ci.role": "identity-reader"}
    )
    try:
        return _read_file(container, "/etc/passwd"), _read_file(container, "/etc/group")
    finally:
        container.remove(force=True)


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


def _publish(directory: Path, files: dict[str, bytes]) -> None:
    """Write the files into a fresh directory and rename it into place.

    Two builds of a new image may generate the files at once; the rename makes
    one of them win whole, and the other's identical files are dropped.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
            # Read inside the container by the build user through the bind mount.
            (staging / name).chmod(0o644)
        try:
            os.rename(staging, directory)
        except OSError:
            if not (directory / "passwd").is_file():
                raise
    finally:
        if staging.exists():
            for leftover in staging.iterdir():
                leftover.unlink()
            staging.rmdir()
