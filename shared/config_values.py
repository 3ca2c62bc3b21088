"""The kinds of the network configuration's values (shared/schema): names, hosts, ports, URLs,
tokens, e-mail addresses, Docker engines, cron expressions, branch names and public keys,
each declared once with the rule it is checked by and the words a refusal says."""

from __future__ import annotations

import ipaddress
import re
from typing import Any


from shared.crypto import parse_public_key
from shared.refs import check_branch_name
from shared.schema import Choice, Int, Text, shown

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Repository URLs come only from here. Remote schemes are the ones git
# speaks without running a helper program; anything else must be a path.
_URL = re.compile(r"(https?|ssh|git|file)://[^\s]+|[^\s-][^\s]*")
_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_FULL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
# A bearer token travels in an HTTP header: visible ASCII only, and long
# enough (e.g. `openssl rand -hex 32`) that guessing it is hopeless.
TOKEN_PATTERN = re.compile(r"[!-~]+")
MIN_TOKEN_CHARS = 32
# Where a node's builds run: a Docker engine on its own machine (unix://), or
# elsewhere over TLS with client certificates (tcp://) or over ssh (ssh://).
_DOCKER_SCHEMES = ("unix", "tcp", "ssh")
# ssh's own user-name rules are looser; this is what fits a URL without quoting
# and can never be read as an ssh option.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")
# An e-mail address as notifications take one: a plain addr-spec, no display name, no
# quoting, nothing that could end a header or start another recipient (CR, LF, comma, <, >).
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MAX_EMAIL_CHARS = 254
_REGISTRY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?")


def name_of(what: str) -> Text:
    """A name that is also part of file names, URLs and log lines: letters, digits, . _ -."""
    return Text(_NAME, what=f"a valid {what}")


def is_client_name(name: str) -> bool:
    """A client name is also part of its key file's name, so it is checked before use."""
    return bool(_NAME.fullmatch(name))


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost": only processes on this machine reach it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOST.fullmatch(value):
        raise ValueError(f"is not a valid host name or IP address: {shown(value)}")
    return value


class RepositoryURL(Text):
    """A URL git fetches from, or a path, which is relative to the configuration's folder."""

    def __init__(self) -> None:
        super().__init__(_URL, what="a valid repository URL or path")

    def read(self, value: Any, at: str, reading: Any) -> str:
        url = super().read(value, at, reading)
        if "://" not in url and not url.startswith(("/", "git@")):
            return str((reading.base / url).resolve())
        return url


def _email(value: str) -> str:
    if len(value) > _MAX_EMAIL_CHARS:
        raise ValueError(f"is not a plain e-mail address: longer than {_MAX_EMAIL_CHARS} characters")
    return value


def _docker_host(value: str) -> str:
    """unix:///absolute/path, tcp://host:port or ssh://[user@]host[:port]; nothing else, no options or paths."""
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in _DOCKER_SCHEMES:
        raise ValueError(f"must start with unix://, tcp:// or ssh://, not {value!r}")
    if scheme == "unix":
        if not rest.startswith("/") or re.search(r"[\s\x00]", rest):
            raise ValueError(f"unix:// needs an absolute socket path without spaces, e.g. unix:///run/docker.sock, "
                             f"not {value!r}")
        return value
    user, at, address = rest.rpartition("@")
    if at and scheme == "tcp":
        raise ValueError(f"tcp:// takes no user name: {value!r}")
    if at and not _SSH_USER.fullmatch(user):
        raise ValueError(f"is not a valid ssh user name: {user!r}")
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", address)
    if bracketed:
        if scheme == "ssh":
            # The SDK's ssh transport splits host and port at the first colon.
            raise ValueError(f"ssh:// takes a host name or an IPv4 address, not {value!r}")
        host, port = bracketed.groups()
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"is not a valid IPv6 address: {host!r}") from None
    else:
        # A name or an IPv4 address: no colon, no slash, no leading dash.
        host, colon, port = address.partition(":")
        if not _HOST.fullmatch(host):
            raise ValueError(f"is not a valid {scheme}:// address (host name or IP address, then :port): {value!r}")
        port = port if colon else None
    if port is not None:
        if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
            raise ValueError(f"has an invalid port: {value!r}")
    elif scheme == "tcp":
        raise ValueError(f"tcp:// needs a port, e.g. tcp://build-1.example:2376, not {value!r}")
    return value


def _cron(value: str) -> str:
    from croniter import croniter  # here, where a schedule is read: its import costs every process 0.1 s of CPU

    # Five fields or an @-alias: croniter also reads a sixth field of seconds and a seventh of
    # years, which would let one schedule fire every second.
    if not ((value.startswith("@") or len(value.split()) == 5) and croniter.is_valid(value)):
        raise ValueError(f"is not a cron expression of five fields or an @-alias: {shown(value)}")
    return value


def _branch(value: str) -> str:
    try:
        check_branch_name(value)
    except ValueError as error:
        raise ValueError(f"{shown(value)}: {error}") from None
    return value


def _public_key_hex(value: str) -> str:
    try:
        parse_public_key(value)
    except ValueError:
        raise ValueError(f"is not an Ed25519 public key (64 hex digits): {shown(value)}") from None
    return value.lower()


# A build secret is an environment variable of the build (docs/secrets.md). Names the node
# sets itself (the CI variables, HOME, the reproducible environment), PBFT_CI_* (the node's
# own, e.g. its flaky mode's) and what every shell relies on are not a secret's to replace.
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_RESERVED_SECRET_NAME = re.compile(r"CI|CI_.*|PBFT_CI.*|HOME|USER|LOGNAME|PATH|SHELL|SOURCE_DATE_EPOCH|TZ|LC_ALL|LANG")


def _not_reserved(value: str) -> str:
    if _RESERVED_SECRET_NAME.fullmatch(value):
        raise ValueError(f"{value} is the node's to set (CI, CI_*, PBFT_CI*, HOME, USER, LOGNAME, PATH, SHELL, "
                         "SOURCE_DATE_EPOCH, TZ, LC_ALL, LANG)")
    return value


HOST = Text(what="a host name or IP address", check=_host)
PORT = Int(1, 65535)
HTTP_URL = Text(_HTTP_URL, what="a valid http(s) URL")
FULL_NAME = Text(_FULL_NAME, what="a valid owner/repository name")
STATUS_STYLE = Choice(("github", "gitlab"), what="a status style")
PUBLIC_KEY = Text(what="an Ed25519 public key (64 hex digits)", check=_public_key_hex)
# A client's bearer token; empty (an empty file too) is no token.
CLIENT_TOKEN = Text(re.compile(rf"(?:[!-~]{{{MIN_TOKEN_CHARS},}})?"), secret=True,
                    what=f"a valid token: {MIN_TOKEN_CHARS} or more printable ASCII characters without spaces "
                         "(e.g. openssl rand -hex 32)")
# A notification webhook's HMAC key, which its receiver checks each delivery's signature with.
WEBHOOK_SECRET = Text(re.compile(rf"[\s\S]{{{MIN_TOKEN_CHARS},}}"), secret=True,
                      what=f"a valid webhook secret: at least {MIN_TOKEN_CHARS} characters (e.g. openssl rand -hex 32)")
SECRET = Text(secret=True)
USER_NAME = Text(TOKEN_PATTERN, what="a valid user name (printable ASCII, no spaces)")
EMAIL = Text(_EMAIL, what="a plain e-mail address (name@example.org)", check=_email)
DOCKER_HOST = Text(what="a Docker engine (unix://, tcp:// or ssh://)", check=_docker_host)
CRON = Text(what="a cron expression", check=_cron)
BRANCH = Text(what="a branch name", check=_branch)
SECRET_NAME_KIND = Text(SECRET_NAME, check=_not_reserved,
                        what="an environment variable name (capitals, digits and _, not starting with a digit, "
                             "at most 64)")
UID_GID = Text(re.compile(r"[0-9]+:[0-9]+"), what="a numeric uid:gid (e.g. 1000:1000)")
REGISTRY = Text(_REGISTRY, what="a registry host, host[:port] (docker.io for Docker Hub)")
FILE_NAME = Text(re.compile(r".+"), what="a file name")
