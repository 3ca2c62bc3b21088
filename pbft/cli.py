"""What the node and client command lines share: loading the configuration and setting up logs."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from pbft.config import ConfigError, NetworkConfig, load_config
from pbft.droplog import ReplicaDropFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A log file is renamed to .1 (.1 to .2, ...) once it reaches the size: a
# process keeps at most LOG_MAX_BYTES * (LOG_BACKUPS + 1) of log on disk.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def load_config_or_report(path: str | Path, node_id: int | None = None) -> NetworkConfig | None:
    """The configuration, or None after printing every problem in it to stderr.

    `node_id` is the node about to run with it (see load_config).
    """
    try:
        return load_config(path, node_id=node_id)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def log_handler(path: str | Path) -> logging.Handler:
    """A handler writing to `path` ('-' for stderr), rotated by size, with the protocol core's drop lines rate-limited."""
    handler: logging.Handler
    if str(path) == "-":
        handler = logging.StreamHandler()
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(ReplicaDropFilter())
    return handler


def configure_logging(path: str | Path, level: str = "INFO") -> None:
    """Log to `path` ('-' for stderr), one line per event, without aiohttp's access log."""
    logging.basicConfig(level=level, handlers=[log_handler(path)])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
