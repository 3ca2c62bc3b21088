"""Reading a file an operator names within a bound (shared/boundedread.py): a regular file of at
most the bound is read whole; anything else is refused, at once, saying what it is."""

from __future__ import annotations

import errno
import socket

import pytest

from shared.boundedread import RefusedFile, read_bounded
from tests.support.hostile_files import fifo_in_place_of


def test_a_regular_file_up_to_the_bound_is_read_whole(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100) == b"x" * 100
    path.write_bytes(b"")
    assert read_bounded(path, 100) == b""


@pytest.mark.parametrize("bound, said", [(100, "100 bytes"), (64 * 1024, "64 KiB"), (1024 * 1024, "1 MiB")])
def test_a_file_past_the_bound_is_refused_naming_the_bound(tmp_path, bound, said):
    path = tmp_path / "network.yaml"
    path.write_bytes(b"x" * (bound + 1))
    with pytest.raises(RefusedFile) as caught:
        read_bounded(path, bound)
    assert caught.value.errno == errno.EFBIG
    assert caught.value.strerror == f"is larger than {said}, the most this file may hold"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "network.yaml"
    path.write_text("f: 1\n")
    with fifo_in_place_of(path), pytest.raises(RefusedFile) as caught:
        read_bounded(path, 1024)
    # fifo_in_place_of ends a blocked open after 2 s with an empty file, which would be read as b"".
    assert str(caught.value) == "is a FIFO, not a regular file"


def test_a_directory_a_device_and_a_socket_are_refused_saying_what_they_are(tmp_path):
    device = tmp_path / "zero"
    device.symlink_to("/dev/zero")  # a symbolic link is followed: what it points to is judged
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "socket"))
        for path, kind in ((tmp_path, "a directory"), (device, "a character device"),
                           (tmp_path / "socket", "a socket")):
            with pytest.raises(RefusedFile, match=f"^is {kind}, not a regular file$"):
                read_bounded(path, 1024)


def test_a_missing_file_is_the_systems_own_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "absent", 1024)
