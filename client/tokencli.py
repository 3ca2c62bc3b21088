"""`client/index.py token create|list|revoke`: the personal API tokens of a client's records.

Run on the client's host, beside the client (the records are one SQLite file
it shares): a token made here acts at once, one revoked here is refused at
once. The token is printed once and kept nowhere (client.tables.tokens).
The configuration is the client's own default unless `--config` names the
one the client runs with; records the client has never opened are refused,
not made, since a token written there is one no running client would accept.
"""

from __future__ import annotations

import argparse
import sys
import time

from client.access import ROLES
from client.records import BuildRecords, records_path
from client.tables.tokens import DEFAULT_DAYS, MAX_TOKEN_DAYS, TokenMade
from pbft.build import ACTOR_NAME
from pbft.wire import NAME, MessageError
from shared.cli import load_config_or_report

# The client's own default (client/index.py, scripts/startClient.sh), so that both find the same records.
DEFAULT_CONFIG = "example-config/network.yaml"


def token_command(argv: list[str], prog: str) -> int:
    """Exit 0 when done, 1 when there was nothing to do (a token already revoked), 2 on usage
    or configuration errors."""
    parser = argparse.ArgumentParser(prog=f"{prog} token", description="Make, list or revoke personal API tokens.",
                                     parents=[_where(DEFAULT_CONFIG, None)])
    # Taken after the verb too (`token list --config X`), where they override nothing unless given.
    after = [_where(argparse.SUPPRESS, argparse.SUPPRESS)]
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="make a token and print it, once", parents=after)
    create.add_argument("--owner", required=True, type=_plain, help="whom it acts for: the actor its requests name")
    create.add_argument("--role", choices=ROLES,
                        help="what it may do (each role includes the ones before); default: whatever the"
                             " client's grants give its owner, when it is used")
    create.add_argument("--repository", action="append", type=_repository, dest="repositories",
                        help="with --role: a repository it acts on (repeatable; default: every one)")
    create.add_argument("--label", default="api", type=_plain, help="what it is for, shown when listed")
    create.add_argument("--days", type=_days, default=DEFAULT_DAYS,
                        help=f"how long it is valid, 1 to {MAX_TOKEN_DAYS} days (default: %(default)s)")
    verbs.add_parser("list", help="every token: its owner, role and dates, never the token", parents=after)
    revoke = verbs.add_parser("revoke", help="refuse a token from now on", parents=after)
    revoke.add_argument("token_id", type=int, metavar="ID")
    args = parser.parse_args(argv)
    config = load_config_or_report(args.config, read_secrets=False)
    if config is None:
        return 2
    if args.verb == "create" and args.repositories and args.role is None:
        print("--repository needs --role: a token without one acts where its owner's grants say", file=sys.stderr)
        return 2
    name = args.client or config.clients[0].name
    path = records_path(config.data_dir, name)
    if not path.is_file():
        print(f"no records of client {name} at {path}: that client has not run with {args.config} on this host."
              " Give the --config (and --name) it runs with, or start it once first", file=sys.stderr)
        return 2
    records = BuildRecords(path)
    try:
        if args.verb == "create":
            scope = None if args.repositories is None else frozenset(args.repositories)
            token_id, token = records.tokens.create(TokenMade(args.owner, args.label, args.role, args.days, scope),
                                                    time.time())
            where = "every repository" if scope is None else ", ".join(sorted(scope))
            role = f"role {args.role} on {where}" if args.role else "the roles its owner's grants give"
            print(f"token {token_id} for {args.owner}, {role}, valid {args.days} days, in the records of client"
                  f" {name} ({path}):", file=sys.stderr)
            print(token)
        elif args.verb == "list":
            for row in records.tokens.listed():
                state = f"revoked {row['revoked_at']}" if row["revoked_at"] else f"expires {row['expires_at']}"
                where = ",".join(row["repositories"]) if row["repositories"] else "*"
                role = row["role"] or "grants"
                print(f"{row['token_id']}\t{row['owner']}\t{role}\t{where}\t{row['label']}\t{state}")
        elif not records.tokens.revoke(args.token_id, time.time()):
            print(f"no token {args.token_id} to revoke (none, or revoked before)", file=sys.stderr)
            return 1
    finally:
        records.close()
    return 0


def _where(config: str, client: str | None) -> argparse.ArgumentParser:
    """The options that say whose records: the configuration, and which of its clients."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", default=config,
                         help=f"the network configuration YAML the client runs with (default: {DEFAULT_CONFIG},"
                              " as for the client)")
    options.add_argument("--name", dest="client", default=client,
                         help="the client whose records hold them (default: the first one)")
    return options


def _plain(text: str) -> str:
    if not ACTOR_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "letters, digits and ._@+:/- only, at most 128, starting with a letter or digit")
    return text


def _repository(text: str) -> str:
    try:
        return NAME.read(text, "repository")
    except MessageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _days(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= MAX_TOKEN_DAYS:
        raise argparse.ArgumentTypeError(f"a whole number of days from 1 to {MAX_TOKEN_DAYS}")
    return int(text)
