#!/usr/bin/env python3
"""Run one pbft-ci node of a network configuration."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Run as `.venv/bin/python node/index.py`: make the project root importable, and take
# node/ itself off the path so its modules never shadow the standard library.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

from node.byzantine import HONEST, MODES, make_behaviour, parse_mode, positive_integer  # noqa: E402
from node.crashpoints import CRASH_EXIT_CODE, CRASH_POINTS, CrashAt  # noqa: E402
from node.instant import instant_build  # noqa: E402
from node.server import CommandLine, make_app  # noqa: E402
from shared.cli import configure_logging, load_config_or_report, own_key_problem, serve  # noqa: E402
from shared.crypto import load_private_key  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python node/index.py",
        description="Run one pbft-ci node: it orders build requests with PBFT and runs each build in Docker.",
    )
    parser.add_argument("--config", default="example-config/network.yaml",
                        help="network configuration YAML (default: %(default)s)")
    parser.add_argument("--id", type=int, required=True, help="this node's id in the configuration")
    parser.add_argument("--host", help="address to listen on (default: the node's host in the configuration)")
    parser.add_argument("--log-file",
                        help="log file (default: <log_dir>/node-<id>.log from the configuration; '-' for stderr)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging threshold (default: %(default)s)")
    takes = "; ".join(f"{name} takes {mode.argument.name}" for name, mode in MODES.items() if mode.argument)
    parser.add_argument("--byzantine", nargs="+", metavar=("MODE", "ARG"),
                        help="demos and tests only: misbehave on purpose. MODE is one of "
                             f"{', '.join(MODES)}; {takes}, e.g. --byzantine delay 200. "
                             "Refused unless the configuration sets allow_byzantine: true.")
    parser.add_argument("--instant-builds", action="store_true",
                        help="tests and benchmarks only: answer every build at once without Docker. "
                             "Refused unless the configuration sets allow_byzantine: true.")
    parser.add_argument("--crash-at", nargs=2, metavar=("POINT", "TURNS"),
                        help="tests only: end the process with exit code "
                             f"{CRASH_EXIT_CODE}, as kill -9 would, the first time it reaches POINT after TURNS "
                             "scheduled saves ran: "
                             + "; ".join(f"{point}: {where}" for point, where in CRASH_POINTS.items())
                             + ". Refused unless the configuration sets allow_byzantine: true.")
    args = parser.parse_args(argv)
    if args.crash_at:
        point, turns = args.crash_at
        if point not in CRASH_POINTS:
            parser.error(f"--crash-at: unknown point {point!r}; choose one of: {', '.join(CRASH_POINTS)}")
        try:
            args.crash_at = CrashAt(point, positive_integer(turns))
        except ValueError:
            parser.error(f"--crash-at: TURNS must be a positive integer, e.g. --crash-at {point} 20; got {turns!r}")
    if args.byzantine:
        try:
            args.byzantine = parse_mode(args.byzantine)
        except ValueError as error:
            parser.error(f"--byzantine: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The client's secrets (its token, forge secrets) stay on the client's host.
    config = load_config_or_report(args.config, node_id=args.id, read_secrets=False)
    if config is None:
        return 2
    if not config.has_node(args.id):
        ids = ", ".join(str(node.id) for node in config.nodes)
        print(f"--id must be a node of {config.path} ({ids}) or the one its joining: section names",
              file=sys.stderr)
        return 2
    if not args.instant_builds:
        # Imported here: a node with instant builds never needs the docker SDK.
        from builder.engine.host import missing_support

        problem = missing_support(config.node(args.id).docker)
        if problem is not None:
            print(f"{config.path}: node {args.id} cannot reach its build engine: {problem}", file=sys.stderr)
            return 2
    for switch, used in (("--byzantine", args.byzantine), ("--instant-builds", args.instant_builds),
                         ("--crash-at", args.crash_at)):
        if used and not config.allow_byzantine:
            print(f"{switch} is refused: {config.path} does not set allow_byzantine: true", file=sys.stderr)
            return 2
    problem = own_key_problem(config, node_id=args.id)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    node = config.node(args.id)
    configure_logging(args.log_file or str(config.log_dir / f"node-{args.id}.log"), args.log_level)
    behaviour = HONEST
    if args.byzantine:
        behaviour = make_behaviour(*args.byzantine, private_key=load_private_key(config.node_key_path(args.id)),
                                   node_id=args.id, n=config.n)
        logging.getLogger("node").warning("node=%d started as byzantine: %s", args.id, behaviour)
    if args.crash_at:
        logging.getLogger("node").warning("node=%d started with a crash point: %s", args.id, args.crash_at)
    app = make_app(config, args.id, behaviour=behaviour, build=instant_build if args.instant_builds else None,
                   command_line=CommandLine(args.config, args.crash_at), heartbeat_s=config.protocol.peer_heartbeat_s)
    ssl_context = config.tls.server_context(args.id) if config.tls is not None else None
    return serve(app, f"node {args.id}", host=args.host or node.host, port=node.port, print=None,
                 access_log=None, ssl_context=ssl_context)


if __name__ == "__main__":
    sys.exit(main())
