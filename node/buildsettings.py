"""The build settings a node makes a build with, as its log and `GET /status` say them: the
digest of the network document the build is made from and the limits that document gives,
so that a node that builds with other settings than its peers is seen."""

from __future__ import annotations

from shared.config import NetworkConfig


def effective(config: NetworkConfig | str) -> dict:
    """The build settings `config` gives, or why the node has none (`Driver.config_for`)."""
    if isinstance(config, str):
        return {"error": config}
    limits = config.build
    return {"network": config.digest, "image": limits.image, "timeout_s": limits.timeout_s,
            "memory_mb": limits.memory_mb, "cpus": limits.cpus, "pids_limit": limits.pids_limit}


def start_line(config: NetworkConfig) -> str:
    """The settings part of a build's start line in the node's log."""
    limits = config.build
    return (f"network={config.digest[:16]} image={limits.image} timeout_s={limits.timeout_s:g} "
            f"memory_mb={limits.memory_mb:d} cpus={limits.cpus:g} pids_limit={limits.pids_limit:d}")
