"""Whether a node or the client can listen on its address, checked before it starts.

aiohttp binds its port only after the application has started (a node has
opened its store and swept its leftover builds by then), and a busy port ends
the process with a traceback. Trying the address first gives one line that
names it and, where this user may see it, the process that holds it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

# /proc/net/tcp's state column for a listening socket.
_LISTEN = "0A"
_SHOWN_COMMAND_CHARS = 80


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on `host`:`port` now, in one line, or None when it can.

    Binds as asyncio's create_server does (SO_REUSEADDR, IPv6 sockets IPv6
    only), so a port left in TIME_WAIT by a stopped process counts as free,
    as it is for the server.
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"cannot listen on {shown}: {error.strerror}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                holder = port_holder(port)
                held = f"; {holder} listens on it" if holder else ""
                return f"cannot listen on {shown}: {error.strerror}{held}"
    return None


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """'pid N (its command line)' of a process listening on TCP `port`, or None when there is
    none this user may see (another user's processes hide their file descriptors)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue
            if target in inodes:
                return f"pid {entry.name} ({_command_of(entry)})"
    return None


def _command_of(process: Path) -> str:
    try:
        words = (process / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    command = " ".join(word.decode(errors="replace") for word in words)
    if len(command) > _SHOWN_COMMAND_CHARS:
        return command[:_SHOWN_COMMAND_CHARS - 1] + "…"
    return command
