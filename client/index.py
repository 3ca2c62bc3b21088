"""Run the pbft-ci client: the webhook endpoint in front of a PBFT network.

A `POST /webHook` with `{"branch": ...}` is signed and sent to the network;
the answer is the build result once f+1 nodes have signed the same one.
`token create|list|revoke` manages personal API tokens (client.tokencli).
`verify FILE --config NETWORK.yaml` checks a verdict certificate
(`GET /builds/{id}/certificate`), attestation (`GET /builds/{id}/attestation`,
a DSSE envelope) or artifacts' provenance (a DSSE envelope of SLSA
provenance) offline, with the network's public keys only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, sys.path[0] is client/, whose module names could shadow
# the standard library; the repository root is what imports need instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
if __name__ == "__main__":
    from shared.project_python import use_project_python

    use_project_python()  # from a plain shell's python3: run again under .venv/bin/python

import argparse  # noqa: E402
import logging  # noqa: E402

from client.app import make_app  # noqa: E402
from client.tokencli import DEFAULT_CONFIG, token_command  # noqa: E402
from client.verify import verify  # noqa: E402
from shared.cli import configure_logging, load_config_or_report, own_key_problem, serve  # noqa: E402
from shared.config import is_loopback_host  # noqa: E402

# What help and usage lines show: the command as typed from the repository root.
PROG = ".venv/bin/python client/index.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [options]\n       %(prog)s verify FILE --config NETWORK.yaml\n"
        "       %(prog)s token {create,list,revoke} [--config NETWORK.yaml]",
        description="Run the pbft-ci client, the webhook endpoint in front of a PBFT network (first form),"
        " or check a verdict certificate or attestation offline (second form; see '%(prog)s verify -h').",
        epilog="Keys must exist first: .venv/bin/python scripts/keygen.py CONFIG for a network on one machine"
        " (scripts/startClient.sh does it), .venv/bin/python scripts/nodekey.py generate --client NAME on the"
        " client's own host.",
    )
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="network configuration YAML (default: %(default)s)"
    )
    parser.add_argument("--name", help="which client of the configuration to run as (default: the first one)")
    parser.add_argument("--host", help="address to listen on (default: the client's host in the configuration)")
    parser.add_argument("--port", type=int, help="port to listen on (default: the client's port in the configuration)")
    parser.add_argument(
        "--deadline-s",
        type=float,
        help="seconds a webhook waits for f+1 matching replies before answering 504"
        " (default: protocol.client_deadline_s in the configuration)",
    )
    parser.add_argument(
        "--log-file", help="where to log, '-' for stderr (default: client.log in the configuration's log_dir)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A leading word picks the subcommand, so `index.py [options]` keeps
    # running the client exactly as it did before `verify` existed.
    if argv[:1] == ["verify"]:
        return verify(argv[1:], prog=f"{PROG} verify")
    if argv[:1] == ["token"]:
        return token_command(argv[1:], PROG)
    return run(argv)


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    config = load_config_or_report(args.config)
    if config is None:
        return 2
    name = args.name or config.clients[0].name
    try:
        client = config.client(name)
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    if args.deadline_s is not None and args.deadline_s <= 0:
        print("--deadline-s must be positive", file=sys.stderr)
        return 2
    # The config may waive the token only because the client listens on loopback.
    waived = client.plain_without_token and not client.token
    if args.host is not None and waived and not is_loopback_host(args.host):
        print(f"--host {args.host} is not a loopback address, but client {name} sets plain_without_token:"
              " set its token_file instead", file=sys.stderr)
        return 2
    problem = own_key_problem(config, client=name)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    configure_logging(args.log_file or config.log_dir / "client.log")
    logging.getLogger(__name__).info("client %s starting with %s", name, config.path)
    return serve(
        # SIGHUP re-reads the file it was started with (shared.reload).
        make_app(config, name, deadline_s=args.deadline_s, config_path=args.config),
        f"client {name!r}",
        host=client.host if args.host is None else args.host,
        port=client.port if args.port is None else args.port,
    )


if __name__ == "__main__":
    sys.exit(main())
