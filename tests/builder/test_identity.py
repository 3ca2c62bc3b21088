"""The build user's passwd and group entries, generated from an image's own files (no Docker needed)."""

import io
import tarfile

import docker.errors
import pytest

from builder.engine.identity import Identities, IdentityError, group_with_build_group, passwd_with_build_user

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


class _FakeVolume:
    def __init__(self, name, labels):
        self.name = name
        self.labels = labels
        self.files: dict[str, bytes] = {}
        self.attrs = {"Mountpoint": f"/engine/volumes/{name}/_data", "Labels": labels}
        self.removed = False

    def reload(self):
        pass

    def remove(self, force=False):
        self.removed = True


class _FakeContainer:
    def __init__(self, files, volume):
        self.files = files
        self.volume = volume
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

    def put_archive(self, path, data):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                self.volume.files[member.name] = (tar.extractfile(member).read(), member.mode)
        return True

    def remove(self, force=False):
        self.removed = True


class _FakeClient:
    """Stands in for docker.DockerClient: containers.create gives a container holding `files` and
    mounting the volume it names; volumes.create, get and list keep volumes in memory."""

    def __init__(self, files):
        self.files = files
        self.created = []
        self.volumes_made: list[_FakeVolume] = []
        self.containers = _Namespace(create=self._create)
        self.volumes = _Namespace(create=self._create_volume, get=self._get_volume, list=self._list_volumes)

    def _create(self, image, command, mounts=(), **options):
        (volume,) = [v for v in self.volumes_made if v.name == mounts[0]["Source"]]
        self.created.append(_FakeContainer(self.files, volume))
        return self.created[-1]

    def _create_volume(self, name, driver, labels):
        self.volumes_made.append(_FakeVolume(name, labels))
        return self.volumes_made[-1]

    def _get_volume(self, name):
        for volume in self.volumes_made:
            if volume.name == name and not volume.removed:
                return volume
        raise docker.errors.NotFound(name)

    def _list_volumes(self, filters):
        wanted = dict(label.split("=", 1) for label in filters["label"])
        return [v for v in self.volumes_made if not v.removed and wanted.items() <= v.labels.items()]


class _Namespace:
    def __init__(self, **methods):
        self.__dict__.update(methods)


LABELS = {"pbft-ci.executor": "e1"}


def test_the_files_are_made_once_per_image_and_user_in_a_volume_of_the_engine():
    client = _FakeClient({"/etc/passwd": IMAGE_PASSWD})
    identities = Identities(LABELS)

    first = identities.get(client, image_id="sha256:abc", uid=1000, gid=1000)
    again = identities.get(client, image_id="sha256:abc", uid=1000, gid=1000)

    assert first == again
    (volume,) = client.volumes_made
    assert volume.labels == {**LABELS, "pbft-ci.role": "identity"}
    # Paths on the engine's machine, inside the volume: never the node's own files.
    assert first.passwd_source == f"/engine/volumes/{volume.name}/_data/passwd"
    assert first.group_source == f"/engine/volumes/{volume.name}/_data/group"
    passwd, passwd_mode = volume.files["passwd"]
    assert passwd.endswith(b"build:x:1000:1000:pbft-ci build:/home/build:/bin/sh\n")
    assert volume.files["group"] == (b"root:x:0:\nbuild:x:1000:\n", 0o644) and passwd_mode == 0o644
    assert first.environment() == {"HOME": "/home/build", "USER": "build", "LOGNAME": "build"}
    assert [(m["Type"], m["Target"], m["ReadOnly"]) for m in first.mounts(hosts=False)] == [
        ("bind", "/etc/passwd", True), ("bind", "/etc/group", True),
    ]
    # A container with networking disabled gets the loopback names the engine leaves out there.
    assert first.hosts_source == f"/engine/volumes/{volume.name}/_data/hosts"
    hosts, hosts_mode = volume.files["hosts"]
    assert hosts.startswith(b"127.0.0.1\tlocalhost\n::1\tlocalhost ") and hosts_mode == 0o644
    assert [(m["Target"], m["Source"]) for m in first.mounts(hosts=True)][2:] == [("/etc/hosts", first.hosts_source)]
    assert len(client.created) == 1 and client.created[0].removed


def test_a_volume_removed_behind_the_nodes_back_is_made_again():
    client = _FakeClient({"/etc/passwd": IMAGE_PASSWD})
    identities = Identities(LABELS)
    first = identities.get(client, image_id="sha256:abc", uid=1000, gid=1000)

    client.volumes_made[0].removed = True  # docker volume prune: no container mounts it as a volume
    again = identities.get(client, image_id="sha256:abc", uid=1000, gid=1000)

    assert again != first and len(client.volumes_made) == 2
    assert again.passwd_source == f"/engine/volumes/{client.volumes_made[1].name}/_data/passwd"


def test_past_its_bound_the_least_recently_used_identity_goes_with_its_volume():
    client = _FakeClient({"/etc/passwd": IMAGE_PASSWD})
    identities = Identities(LABELS, keep=2)
    first = identities.get(client, image_id="sha256:a", uid=1000, gid=1000)
    identities.get(client, image_id="sha256:b", uid=1000, gid=1000)
    identities.get(client, image_id="sha256:a", uid=1000, gid=1000)  # a is used again: b is the oldest

    identities.get(client, image_id="sha256:c", uid=1000, gid=1000)

    assert [volume.removed for volume in client.volumes_made] == [False, True, False]
    assert identities.get(client, image_id="sha256:a", uid=1000, gid=1000) == first
    identities.get(client, image_id="sha256:b", uid=1000, gid=1000)  # made again; c goes
    assert [volume.removed for volume in client.volumes_made] == [False, True, True, False]


def test_closing_removes_every_identity_volume_of_the_executor():
    client = _FakeClient({"/etc/passwd": IMAGE_PASSWD})
    identities = Identities(LABELS)
    identities.get(client, image_id="sha256:abc", uid=1000, gid=1000)
    identities.get(client, image_id="sha256:abc", uid=0, gid=0)
    stranger = client.volumes.create(name="other", driver="local", labels={"pbft-ci.executor": "e2"})

    identities.remove_all(client)

    assert all(volume.removed for volume in client.volumes_made if volume is not stranger)
    assert not stranger.removed


def test_an_oversized_passwd_is_refused_with_a_fixed_reason():
    client = _FakeClient({"/etc/passwd": b"x" * (1024 * 1024 + 1)})

    with pytest.raises(IdentityError, match=r"^image /etc/passwd is larger than 1048576 bytes$"):
        Identities(LABELS).get(client, image_id="sha256:big", uid=1000, gid=1000)
    assert client.created[0].removed
    assert client.volumes_made[0].removed
