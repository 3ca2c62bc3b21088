"""What the node and client command lines share: loading the configuration and setting up logs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pbft.config import ConfigError, NetworkConfig, load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def load_config_or_report(path: str | Path) -> NetworkConfig | None:
    """The configuration, or None after printing every problem in it to stderr."""
    try:
        return load_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def configure_logging(path: str | Path, level: str = "INFO") -> None:
    """Log to `path` ('-' for stderr), one line per event, without aiohttp's access log."""
    handler: logging.Handler
    if str(path) == "-":
        handler = logging.StreamHandler()
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
