"""Whether a server can listen on its address, and who holds a busy port (shared/ports.py)."""

from __future__ import annotations

import os
import socket

from harness.network import free_port
from shared.ports import listen_problem, port_holder


def test_a_free_port_is_no_problem():
    assert listen_problem("127.0.0.1", free_port()) is None


def test_a_busy_port_is_one_line_naming_the_address_and_the_process_holding_it():
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        problem = listen_problem("127.0.0.1", port)
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"cannot listen on 127.0.0.1:{port}: Address already in use; pid {os.getpid()} (")


def test_a_port_held_on_every_address_is_busy_on_loopback_too():
    with socket.create_server(("0.0.0.0", 0)) as holder:
        port = holder.getsockname()[1]
        assert port_holder(port).startswith(f"pid {os.getpid()} (")
        assert "Address already in use" in listen_problem("127.0.0.1", port)


def test_nobody_holds_a_port_nothing_listens_on():
    assert port_holder(free_port()) is None
