"""The build user's passwd and group entries, generated from an image's own files (no Docker needed)."""

import io
import tarfile

import docker.errors
import pytest

from node.identity import IdentityError, build_identity, group_with_build_group, passwd_with_build_user

IMAGE_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"


def test_a_missing_uid_gets_a_build_entry_with_the_writable_home():
    passwd, name = passwd_with_build_user(IMAGE_PASSWD, 1000, 1000)

    assert name == "build"
    assert passwd == IMAGE_PASSWD + b"build:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n"


def test_an_image_without_passwd_gets_root_and_build():
    passwd, name = passwd_with_build_user(None, 1000, 1000)

    assert name == "build"
    assert passwd == b"root:x:0:0:root:/root:/bin/sh\nbuild:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n"


def test_an_existing_entry_for_the_uid_keeps_its_name_and_gets_the_writable_home():
    image = IMAGE_PASSWD + b"node:x:1000:1000::/home/node:/bin/bash\n"

    passwd, name = passwd_with_build_user(image, 1000, 1000)

    assert name == "node"
    assert passwd == IMAGE_PASSWD + b"node:x:1000:1000::/home/build:/bin/bash\n"


def test_the_name_build_held_by_another_uid_is_not_reused():
    image = IMAGE_PASSWD + b"build:x:1001:1001::/home/build:/bin/sh\n"

    passwd, name = passwd_with_build_user(image, 1000, 1000)

    assert name == "pbft-ci-build"
    assert passwd == image + b"pbft-ci-build:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n"


def test_a_group_is_added_only_when_the_gid_has_none():
    assert group_with_build_group(b"root:x:0:\nusers:x:1000:\n", 1000) == b"root:x:0:\nusers:x:1000:\n"
    assert group_with_build_group(b"root:x:0:\n", 1000) == b"root:x:0:\nbuild:x:1000:\n"
    assert group_with_build_group(None, 1000) == b"root:x:0:\nbuild:x:1000:\n"


class _FakeContainer:
    def __init__(self, files):
        self.files = files
        self.removed = False

    def get_archive(self, path):
        if path not in self.files:
            raise docker.errors.NotFound(path)
        content = self.files[path]
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(path.rsplit("/", 1)[1])
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        return iter([archive.getvalue()]), {"size": len(content)}

    def remove(self, force=False):
        self.removed = True


class _FakeClient:
    """Stands in for docker.DockerClient: containers.create gives a container holding `files`."""

    def __init__(self, files):
        self.files = files
        self.created = []
        self.containers = self

    def create(self, image, command, **options):
        self.created.append(_FakeContainer(self.files))
        return self.created[-1]


def test_the_files_are_read_once_per_image_and_user_and_never_started(tmp_path):
    client = _FakeClient({"/etc/passwd": IMAGE_PASSWD})

    first = build_identity(client, image_id="sha256:abc", uid=1000, gid=1000, cache_dir=tmp_path, labels={})
    again = build_identity(client, image_id="sha256:abc", uid=1000, gid=1000, cache_dir=tmp_path, labels={})

    assert first == again
    assert first.passwd_path == tmp_path / "abc" / "1000-1000" / "passwd"
    assert first.passwd_path.read_bytes().endswith(b"build:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n")
    assert first.group_path.read_bytes() == b"root:x:0:\nbuild:x:1000:\n"
    assert oct(first.passwd_path.stat().st_mode & 0o777) == "0o644"
    assert first.environment() == {"HOME": "/home/build", "USER": "build", "LOGNAME": "build"}
    assert [(m["Target"], m["ReadOnly"]) for m in first.mounts()] == [("/etc/passwd", True), ("/etc/group", True)]
    assert len(client.created) == 1 and client.created[0].removed


def test_an_oversized_passwd_is_refused_with_a_fixed_reason(tmp_path):
    client = _FakeClient({"/etc/passwd": b"x" * (1024 * 1024 + 1)})

    with pytest.raises(IdentityError, match=r"^image /etc/passwd is larger than 1048576 bytes$"):
        build_identity(client, image_id="sha256:big", uid=1000, gid=1000, cache_dir=tmp_path, labels={})
    assert client.created[0].removed
    assert not (tmp_path / "big").exists()
