"""The files a network configuration names besides itself: secrets and public keys kept in a
file of their own (`token_file`, `public_key_file`), build secrets, each node's forge token,
and where each principal's private key lives.

Each is read within a bound (shared/boundedread.py), and what is wrong with one is said
with its path, never with what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from shared.boundedread import MAX_SECRET_FILE_BYTES, read_bounded
from shared.crypto import raw_public_key_of_pem
from shared.config_values import TOKEN_PATTERN
from shared.schema import Invalid, Reading, held, schema_of
from shared.schema.sections import Declared
from shared.secretmask import MIN_FORM_CHARS

# A value shorter than this would be masked wherever those few characters appear in a build's
# output (a 1-character secret would mask every "a"); the masker's shortest form is as long.
MIN_SECRET_CHARS = MIN_FORM_CHARS
# A private key in PEM fits; every form of a value is looked for in every build's output.
MAX_SECRET_CHARS = 8192


@dataclass(frozen=True)
class LoadOptions:
    """What a loading of the configuration reads besides the file (see `load_config`)."""

    require_keys: bool = True  # a public key file that does not exist yet is a problem
    read_secrets: bool = True  # the client's secrets kept in files are read (a node's host holds none)
    document_only: bool = False  # the mapping is a network document alone (shared/networkdoc.py)

    def stands_in(self, declared: Declared) -> bool:
        """Whether the setting `declared`, when the mapping leaves it out, stands in, neither
        required nor judged by a rule (`shared.schema.Reading`). In a network document alone,
        every host's own setting does: each host's file gives its own. Where the client's
        secrets are not read, a secret of the client's does, and so does a section of the
        client's that holds one (its mail server, its sign-in): only the client uses them."""
        if not declared.setting.local:
            return False
        return self.document_only or (not self.read_secrets and _holds_a_secret(declared))


def _holds_a_secret(declared: Declared) -> bool:
    """Whether `declared` is a secret kept in a file of the client's, or a section that holds one."""
    if isinstance(declared.setting.file, SecretFile):
        return True
    inner, _ = held(declared.kind)
    return inner is not None and any(_holds_a_secret(setting) for setting in schema_of(inner).settings)


def _text_of(path: Path) -> str:
    try:
        data = read_bounded(path, MAX_SECRET_FILE_BYTES)
    except OSError as error:
        raise Invalid(f"cannot read {path}: {error.strerror}") from None
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise Invalid(f"{path} is not UTF-8 text") from None


class OwnerKeyFile:
    """An owner's public key kept in a file: 64 hex digits, or the PEM the in-toto owner key's
    `owner.pub` holds (scripts/owner.py), read as its 64 hex digits."""

    def read(self, path: Path, reading: Reading) -> str | None:
        text = PublicKeyFile().read(path, reading)
        if text is None or not text.startswith("-----BEGIN"):
            return text
        try:
            return raw_public_key_of_pem(text).hex()
        except (ValueError, IndexError, TypeError):
            raise Invalid(f"{path} holds no Ed25519 public key in PEM") from None


class SecretFile:
    """A secret of the client's kept in a file, out of the YAML (`token_file`, `secret_file`):
    its text without surrounding space. Left unread, and the setting empty, when the loading
    reads no secrets: with one node per host, only the client's host holds them."""

    def read(self, path: Path, reading: Reading) -> str | None:
        return _text_of(path) if reading.options.read_secrets else None


class PublicKeyFile:
    """A public key kept in a file (`public_key_file`), as scripts/keygen.py writes it. One that
    does not exist yet reads as no key while keys are being generated (require_keys=False)."""

    def read(self, path: Path, reading: Reading) -> str | None:
        if not path.exists():
            if reading.options.require_keys:
                raise Invalid(f"{path} does not exist (run scripts/keygen.py)")
            return None
        return _text_of(path)


def per_node(template: str, node_id: int) -> str:
    """A setting that names one file per node: "{id}" in it stands for the node's id."""
    return template.replace("{id}", str(node_id))


def read_build_secret(path: Path) -> str:
    """The value of a build secret kept in `path`; ValueError says what is wrong with it
    (never the value itself)."""
    try:
        data = read_bounded(path, MAX_SECRET_FILE_BYTES)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    # An editor's (or `echo`'s) final line break is not part of the value; any other is.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValueError(f"{path} is empty")
    if "\0" in value:
        raise ValueError(f"{path} holds a NUL character, which no environment variable can")
    if len(value) < MIN_SECRET_CHARS:
        # Neither message says how long the value is: it is printed where the value must not be.
        raise ValueError(f"{path} holds fewer than {MIN_SECRET_CHARS} characters: so short a value would be "
                         "masked wherever those characters appear in a build's output")
    if len(value) > MAX_SECRET_CHARS:
        raise ValueError(f"{path} holds more than {MAX_SECRET_CHARS} characters")
    return value


def read_node_status_token(path: Path) -> str:
    """A node's forge token for its own statuses, from its file; ValueError names the file and
    what is wrong, never the file's content."""
    try:
        token = read_bounded(path, MAX_SECRET_FILE_BYTES).decode().strip()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not text") from None
    if not token:
        raise ValueError(f"{path} is empty")
    # It goes into an HTTP header, where a line break would start another one.
    if not TOKEN_PATTERN.fullmatch(token):
        raise ValueError(f"{path} must hold one token of printable ASCII without spaces")
    return token


def node_key_file(keys_dir: Path, node_id: int) -> Path:
    """Where a node's private key lives in a keys folder (its public half beside it, as .pub)."""
    return Path(keys_dir) / f"node-{node_id}.key"


def node_next_key_file(keys_dir: Path, node_id: int) -> Path:
    """Where a node keeps the key that is to replace its own (scripts/network.py join --next):
    it signs with it from the change of the network document that names its public half."""
    return Path(keys_dir) / f"node-{node_id}.next.key"


def client_key_file(keys_dir: Path, name: str) -> Path:
    return Path(keys_dir) / f"client-{name}.key"


def runner_key_file(keys_dir: Path, name: str) -> Path:
    return Path(keys_dir) / f"runner-{name}.key"
