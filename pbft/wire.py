"""The wire form of protocol messages, derived from their declarations.

Each message (and each object nested in one) is declared once, as a class
whose fields say how they travel: `wire(kind)` as the field's default gives
its kind, which both writes and strictly reads the value. `message` and
`struct` make the class a frozen dataclass (a signed message gets its last
field, `sig`) and derive from that one declaration:

- `payload()`: the dict a message's signature covers: its "type", then its
  signed fields in declaration order;
- `encode`: the wire form: the payload, then "sig", then fields that travel
  unsigned (a pre-prepare's batch, which its signed digest binds already);
  a struct is its fields alone;
- `decode`: the inverse, which accepts only well-formed input and raises
  `MessageError` with a reason otherwise, so nothing malformed from a peer
  reaches the protocol core.

A field declared with `omit=` is left out of the wire form while it holds
that value, and read as it when absent: fields added after signatures were
first made (attestation signatures, a result's spec) leave the bytes of
earlier messages as they were. Key order on the wire is the declaration
order; signatures are over the canonical form (`pbft.encoding`), so only
stored and recorded frames see it (tests/core/test_recorded_frames.py).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any, Callable

MAX_TEXT = 1024
_ABSENT = object()


class MessageError(ValueError):
    """A frame that is not a well-formed protocol message."""


class Kind:
    """How one field's value is written (`write`; None: as it is) and read (`read`)."""

    write: Callable[[Any], Any] | None = None

    def read(self, value: Any, name: str) -> Any:
        raise NotImplementedError


class Int(Kind):
    """A non-negative 63-bit integer: sequence numbers, views, timestamps, node ids."""

    def read(self, value: Any, name: str) -> int:
        if type(value) is not int or not 0 <= value < 2**63:
            raise MessageError(f"{name} must be a non-negative 63-bit integer")
        return value


class Bool(Kind):
    """true or false (JSON's, not 0 or 1)."""

    def read(self, value: Any, name: str) -> bool:
        if type(value) is not bool:
            raise MessageError(f"{name} must be true or false")
        return value


class ExitCode(Kind):
    """A 32-bit signed integer (a process's exit code)."""

    def read(self, value: Any, name: str) -> int:
        if type(value) is not int or not -(2**31) <= value < 2**31:
            raise MessageError(f"{name} must be an integer or null")
        return value


class Text(Kind):
    """A string of at most `limit` characters, matching `pattern` if given, one of
    `choices` if given. `intern`: one string object for every copy (client names key
    every table that remembers an hour of a client's requests)."""

    def __init__(
        self, pattern: re.Pattern | None = None, *, limit: int = MAX_TEXT, choices: tuple[str, ...] = (),
        intern: bool = False,
    ) -> None:
        fullmatch = None if pattern is None else pattern.fullmatch

        def refuse(value: Any, name: str) -> MessageError:
            if not isinstance(value, str) or len(value) > limit:
                return MessageError(f"{name} must be a string of at most {limit} characters")
            if fullmatch is not None and not fullmatch(value):
                return MessageError(f"{name} is not well formed")
            return MessageError(f"unknown {name} {value!r}")

        # A plain function, called for every string of every frame: one made for this kind's
        # checks alone, which passes a well-formed value in one test and leaves the reason
        # for a refusal to `refuse`.
        if choices:
            def read(value: Any, name: str) -> str:
                if isinstance(value, str) and value in choices:
                    return value
                raise refuse(value, name)
        elif fullmatch is None:
            def read(value: Any, name: str) -> str:
                if isinstance(value, str) and len(value) <= limit:
                    return value
                raise refuse(value, name)
        elif intern:
            interned = sys.intern

            def read(value: Any, name: str) -> str:
                if isinstance(value, str) and len(value) <= limit and fullmatch(value):
                    return interned(value)
                raise refuse(value, name)
        else:
            def read(value: Any, name: str) -> str:
                if isinstance(value, str) and len(value) <= limit and fullmatch(value):
                    return value
                raise refuse(value, name)

        assert not (choices and (pattern is not None or intern)), "choices are the whole check"
        self.read = read


class Optional(Kind):
    """`inner`, or null (also when the field is absent)."""

    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.write = None if inner.write is None else (lambda value: None if value is None else inner.write(value))

    def read(self, value: Any, name: str) -> Any:
        return None if value is None else self.inner.read(value, name)


class Nested(Kind):
    """A whole message (with its "type" and "sig") inside another: one of `classes`."""

    def __init__(self, *classes: type, refusal: str = "") -> None:
        self.classes = {cls.TYPE: cls for cls in classes}
        self.refusal = refusal or f"expected a {classes[0].TYPE} message"
        self.write = encode

    def read(self, value: Any, name: str) -> Any:
        cls = self.classes.get(value.get("type")) if isinstance(value, dict) else None
        if cls is None:
            raise MessageError(self.refusal)
        return cls._read(value)


class Struct(Kind):
    """An object without a type of its own inside a message (an operation, a certificate)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.write = encode

    def read(self, value: Any, name: str) -> Any:
        if not isinstance(value, dict):
            raise MessageError(f"{name} must be an object")
        return self.cls._read(value)


class ListOf(Kind):
    """A list of `minimum` to `limit` items of `item`, held as a tuple."""

    def __init__(self, item: Kind, limit: int, *, minimum: int = 0) -> None:
        self.item, self.limit, self.minimum = item, limit, minimum
        write = item.write
        # Held as a tuple, written as the list it is read from (a tuple of plain items too).
        self.write = list if write is None else (lambda values: [write(value) for value in values])

    def read(self, value: Any, name: str) -> tuple:
        if not isinstance(value, list) or not self.minimum <= len(value) <= self.limit:
            raise MessageError(f"{name} must be a list of {self.minimum} to {self.limit} items")
        read = self.item.read
        return tuple([read(item, name) for item in value])


class Pair(Kind):
    """Two values as a two-item list, held as a tuple."""

    def __init__(self, first: tuple[str, Kind], second: tuple[str, Kind], refusal: str) -> None:
        self.first, self.second, self.refusal = first, second, refusal
        self.write = list

    def read(self, value: Any, name: str) -> tuple:
        if not isinstance(value, list) or len(value) != 2:
            raise MessageError(self.refusal)
        (first_name, first), (second_name, second) = self.first, self.second
        return (first.read(value[0], first_name), second.read(value[1], second_name))


def wire(kind: Kind, *, default: Any = dataclasses.MISSING, omit: Any = _ABSENT, signed: bool = True,
         kw_only: bool | Any = dataclasses.MISSING) -> Any:
    """A dataclass field that travels as `kind`. `omit`: left out of the wire form (and read
    when absent) while it holds this value. `signed=False`: travels after the signature,
    outside the payload."""
    metadata = {"kind": kind, "omit": omit, "signed": signed}
    return dataclasses.field(default=default, kw_only=kw_only, metadata=metadata)


# --- derived from the declarations ------------------------------------------------
#
# For each class, the functions that write and read it are generated once, as source
# code, the way `dataclasses` makes __init__: a message is written and read for every
# frame a node sends or takes in, and a loop over the declaration per frame took up to
# two fifths more CPU than hand-written functions (payloads; a tenth for decoding).

_TYPES: dict[str, type] = {}


def _wire_fields(cls: type) -> list[dataclasses.Field]:
    """The declared fields in wire order: signed ones, "sig", then those that travel unsigned."""
    fields = [f for f in dataclasses.fields(cls) if "kind" in f.metadata]
    assert fields, f"{cls.__name__} declares no wire field"
    signed = [f for f in fields if f.metadata["signed"] and f.name != "sig"]
    return signed + [f for f in fields if f.name == "sig"] + [f for f in fields if not f.metadata["signed"]]


def _writer(name: str, fields: list[dataclasses.Field], type_name: str | None, env: dict) -> str:
    """Source of `def name(self) -> dict` writing `fields` (after "type", if any) in order."""
    lines, literal = [f"def {name}(self):"], [] if type_name is None else [f'"type": {type_name!r}']
    tail = []
    for index, f in enumerate(fields):
        write, omit = f.metadata["kind"].write, f.metadata["omit"]
        value = f"self.{f.name}"
        if write is not None:
            env[f"write_{index}"] = write
            value = f"write_{index}({value})"
        if omit is _ABSENT and not tail:
            literal.append(f"{f.name!r}: {value}")
        elif omit is _ABSENT:
            tail.append(f"    out[{f.name!r}] = {value}")
        else:
            env[f"omit_{index}"] = omit
            tail += [f"    if self.{f.name} != omit_{index}:", f"        out[{f.name!r}] = {value}"]
    lines.append("    out = {" + ", ".join(literal) + "}")
    return "\n".join(lines + tail + ["    return out"])


def _reader(fields: list[dataclasses.Field], env: dict) -> str:
    """Source of `def read(data)`: each field read and checked by its kind, or its absence
    allowed (omitted value, null for an Optional) or refused.

    The fields always written come first; those left out while they hold their `omit` value
    are looked up only when the object has keys besides the former (most frames carry none
    of them: a request's operation of a push, a reply's result without artifacts)."""
    kept = [(index, f) for index, f in enumerate(fields) if f.metadata["omit"] is _ABSENT]
    omitted = [(index, f) for index, f in enumerate(fields) if f.metadata["omit"] is not _ABSENT]
    nullable = any(isinstance(f.metadata["kind"], Optional) for _, f in kept)
    lines = ["def read(data):", "    get = data.get"] + (["    absent = 0"] if nullable else [])
    for index, f in kept:
        kind = f.metadata["kind"]
        env[f"read_{index}"] = kind.read
        lines += [f"    value = get({f.name!r}, ABSENT)", "    if value is ABSENT:"]
        if isinstance(kind, Optional):
            lines += [f"        field_{index} = None", "        absent += 1"]  # null when absent
        else:
            lines.append(f"        raise MessageError({f'missing field {f.name!r}'!r})")
        lines += ["    else:", f"        field_{index} = read_{index}(value, {f.name!r})"]
    if omitted:
        for index, f in omitted:
            env[f"omit_{index}"] = f.metadata["omit"]
            env[f"read_{index}"] = f.metadata["kind"].read
        # No keys but the ones read above: every omitted field holds its omit value.
        lines.append(f"    if len(data) == {len(kept)}{' - absent' if nullable else ''}:")
        lines += [f"        field_{index} = omit_{index}" for index, _ in omitted]
        lines.append("    else:")
        for index, f in omitted:
            lines += [f"        value = get({f.name!r}, ABSENT)",
                      f"        field_{index} = omit_{index} if value is ABSENT else read_{index}(value, {f.name!r})"]
    arguments = ", ".join(f"{f.name}=field_{index}" for index, f in enumerate(fields))
    return "\n".join(lines + [f"    return cls({arguments})"])


def _derive(cls: type, type_name: str | None) -> None:
    """Give `cls` its generated `_write` (the wire form), `_read`, and `payload` or `to_dict`."""
    fields = _wire_fields(cls)
    env = {"ABSENT": _ABSENT, "MessageError": MessageError, "cls": cls}
    source = [_writer("write", fields, type_name, env), _reader(fields, env)]
    if type_name is not None:
        signed = [f for f in fields if f.metadata["signed"] and f.name != "sig"]
        source.append(_writer("payload", signed, type_name, env))
    exec("\n\n".join(source), env)  # noqa: S102 - source made above from the declarations alone
    cls._write, cls._read = staticmethod(env["write"]), staticmethod(env["read"])
    if type_name is None:
        cls.to_dict = env["write"]
    else:
        cls.payload = env["payload"]


SIG = Text(re.compile(r"[0-9a-f]{128}"))  # an Ed25519 signature, hex
# The kinds most declarations share: a client's or repository's name, a number, a sha256 in hex.
NAME = Text(re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), intern=True)
SEQ = Int()
HEX64 = Text(re.compile(r"[0-9a-f]{64}"))


def message(message_type: str, *, signed: bool = True) -> Callable[[type], type]:
    """Make a class a protocol message of type `message_type`: a frozen dataclass with a
    payload to sign, a wire form and a decoder, all from its fields' declarations. A signed
    message gets its last field, `sig`: its sender's signature of the payload, on the wire
    after it."""

    def declare(cls: type) -> type:
        assert message_type not in _TYPES, f"two messages of type {message_type!r}"
        if signed:
            # The class's own annotations: a subclass's inherited ones are its base's dict.
            cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), "sig": "str"}
            cls.sig = wire(SIG, default="")
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.TYPE = message_type
        _derive(cls, message_type)
        _TYPES[message_type] = cls
        return cls

    return declare


def struct(cls: type) -> type:
    """Make a class an object that travels inside messages, without a type of its own: a
    frozen dataclass written and read from its fields' declarations."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    _derive(cls, None)
    return cls


def encode(value: Any) -> dict:
    """The wire form of a message or struct, as a dict for JSON."""
    return value._write(value)


def decode_struct(cls: type, data: Any) -> Any:
    """Turn a struct's wire form (as `encode` wrote it) back into `cls`, or raise MessageError."""
    if not isinstance(data, dict):
        raise MessageError(f"{cls.__name__} must be a JSON object")
    return cls._read(data)


def decode(data: Any) -> Any:
    """Turn a parsed JSON frame into a message, or raise MessageError."""
    if not isinstance(data, dict):
        raise MessageError("a message must be a JSON object")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {str(data.get('type'))[:32]!r}")
    return cls._read(data)
