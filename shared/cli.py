"""What the node and client command lines share: loading the configuration and setting up logs."""

from __future__ import annotations

import errno
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.config import ConfigError, NetworkConfig, load_config
from shared.config_files import node_next_key_file
from shared.crypto import load_private_key, public_key_hex
from shared.droplog import ReplicaDropFilter
from shared.ports import listen_problem

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A log file is renamed to .1 (.1 to .2, ...) once it reaches the size: a
# process keeps at most LOG_MAX_BYTES * (LOG_BACKUPS + 1) of log on disk.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def load_config_or_report(
    path: str | Path, *, node_id: int | None = None, read_secrets: bool = True
) -> NetworkConfig | None:
    """The configuration, or None after printing every problem in it to stderr.

    `node_id` and `read_secrets` are load_config's.
    """
    try:
        return load_config(path, node_id=node_id, read_secrets=read_secrets)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def own_key_problem(config: NetworkConfig, *, node_id: int | None = None, client: str | None = None) -> str | None:
    """Why this host cannot sign as node `node_id` (or as `client`), or None when it can.

    On a network with one node per host each host holds only its own private
    key, so the usual mistakes are a key never generated on this host and a
    key whose public half is not the one the configuration names. Peers drop
    everything such a process signs, so it must not start at all.
    """
    if node_id is not None:
        kind, who, flag = "node", f"node {node_id}", f"--node {node_id}"
        path, public_key = config.node_key_path(node_id), config.node(node_id).public_key
    else:
        assert client is not None
        kind, who, flag = "client", f"client {client!r}", f"--client {client}"
        path, public_key = config.client_key_path(client), config.client(client).public_key
    if not path.exists():
        return (f"no private key for {who} at {path}. On the {kind}'s own host run"
                f" scripts/nodekey.py generate {flag} --keys-dir {path.parent} and put the public key it prints"
                f" in {who}'s entry of {config.path} (a network on one machine: scripts/keygen.py {config.path})")
    try:
        own = public_key_hex(load_private_key(path))
    except (OSError, ValueError) as error:
        return f"cannot read the private key of {who} at {path}: {error}"
    if own != public_key and node_id is not None and _next_key_named(config, node_id, public_key):
        return None  # the entry names the key that replaces this one (scripts/network.py join --next)
    if own != public_key:
        return (f"the private key at {path} is not {who}'s: {who}'s entry in {config.path} has public key"
                f" {public_key[:16]}…, this key's is {own[:16]}…; peers would drop everything it signs"
                f" (scripts/nodekey.py check {config.path} {flag} says more)")
    return None


def next_keys(config: NetworkConfig, node_id: int) -> tuple:
    """The key that is to replace this node's, if its operator made one (scripts/network.py join
    --next): the replica signs with it once a change names its public half (`pbft.epochs`)."""
    path = node_next_key_file(config.keys_dir, node_id)
    return (load_private_key(path),) if path.exists() else ()


def _next_key_named(config: NetworkConfig, node_id: int, public_key: str) -> bool:
    try:
        return any(public_key_hex(key) == public_key for key in next_keys(config, node_id))
    except (OSError, ValueError):
        return False


def serve(app: web.Application, who: str, host: str, port: int, **run_app_args: Any) -> int:
    """Run `app` on `host`:`port` until it is stopped and return 0; return 1 after one line on
    stderr, naming `who` and the address, when the port cannot be had.

    The port is tried before the application starts: a node's start opens its
    store and sweeps the leftover builds of its data directory, which must not
    happen while another process of the same node holds the port.
    """
    problem = listen_problem(host, port)
    if problem is None:
        try:
            web.run_app(app, host=host, port=port, **run_app_args)
            return 0
        except OSError as error:
            # Another process took the port between the check and aiohttp's bind.
            if error.errno != errno.EADDRINUSE:
                raise
            problem = listen_problem(host, port) or f"cannot listen on {host}:{port}: {error.strerror}"
    print(f"{who} {problem}", file=sys.stderr)
    return 1


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that keeps its file's size in memory. The standard one, to
    decide each rollover, stats the path twice, seeks to the end and formats the record a
    second time: twice the CPU of the line itself, on every line a node logs per request."""

    def __init__(self, path: str | Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        # Never roll over anything but a regular file (such as /dev/null), as bpo-45401 decided.
        self._rolls = Path(self.baseFilename).is_file()
        self._size = self.stream.seek(0, 2)

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return self._rolls and self._size >= self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + self.terminator).encode("utf-8")
            if self._rolls and self._size and self._size + len(line) > self.maxBytes:
                self.doRollover()
                self._size = 0
            self.stream.buffer.write(line)
            self.flush()  # a line per write: `tail -f` and a crash see every line
            self._size += len(line)
        except Exception:
            self.handleError(record)


def log_handler(path: str | Path) -> logging.Handler:
    """A handler writing to `path` ('-' for stderr), rotated by size, with the protocol core's drop lines rate-limited."""
    handler: logging.Handler
    if str(path) == "-":
        handler = logging.StreamHandler()
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = SizeRotatingFileHandler(path, max_bytes=LOG_MAX_BYTES, backups=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(ReplicaDropFilter())
    return handler


def configure_logging(path: str | Path, level: str = "INFO") -> None:
    """Log to `path` ('-' for stderr), one line per event, without aiohttp's access log."""
    # LOG_FORMAT names no source line, thread or process: don't look them up for every
    # record (the logging HOWTO's "Optimization"; a node logs several lines per request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[log_handler(path)])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
