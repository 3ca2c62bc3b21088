"""A small SMTP server on loopback for the notification tests: speaks enough of RFC 5321 for
smtplib (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every message
it accepts, and can answer MAIL FROM with scripted refusals."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

from harness.network import free_port


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    raw: bytes
    user: str | None  # who logged in, if anyone
    tls: bool  # whether the session had switched to TLS by then

    @property
    def message(self) -> EmailMessage:
        # With the line ends a mailbox stores, as a mail reader would show it.
        return email.message_from_bytes(self.raw.replace(b"\r\n", b"\n"), policy=email.policy.default)


@dataclass
class MailServer:
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this context
    logins: dict[str, str] = field(default_factory=dict)  # user -> password it accepts
    refuse_mail: list[str] = field(default_factory=list)  # answers to the next MAIL FROMs, e.g. "451 later"
    mails: list[Mail] = field(default_factory=list)
    auth_attempts: list[tuple[str, str, bool]] = field(default_factory=list)  # user, password, over TLS
    port: int = 0

    def __post_init__(self) -> None:
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self) -> "MailServer":
        self.port = free_port()
        self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def wait_for_mails(self, count: int, timeout_s: float = 5.0) -> list[Mail]:
        async with asyncio.timeout(timeout_s):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.mails) >= count)
        return self.mails

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = {"tls": False, "user": None, "sender": None, "recipients": []}

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        try:
            await say("220 127.0.0.1 test mail server")
            while line := await reader.readline():
                verb, _, argument = line.decode().rstrip("\r\n").partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    extensions = ["8BITMIME", "SMTPUTF8"]
                    if self.tls is not None and not state["tls"]:
                        extensions.append("STARTTLS")
                    if self.logins:
                        extensions.append("AUTH PLAIN")
                    await say("\r\n".join(f"250-{each}" for each in ["127.0.0.1", *extensions[:-1]])
                              + f"\r\n250 {extensions[-1]}")
                elif verb == "STARTTLS" and self.tls is not None and not state["tls"]:
                    await say("220 go ahead")
                    await writer.start_tls(self.tls)
                    state.update(tls=True, user=None, sender=None, recipients=[])
                elif verb == "AUTH" and argument.upper().startswith("PLAIN"):
                    encoded = argument[5:].strip()
                    if not encoded:
                        await say("334 ")
                        encoded = (await reader.readline()).decode().strip()
                    _, user, password = base64.b64decode(encoded).decode().split("\0")
                    self.auth_attempts.append((user, password, state["tls"]))
                    if self.logins.get(user) == password:
                        state["user"] = user
                        await say("235 2.7.0 authenticated")
                    else:
                        await say("535 5.7.8 authentication failed")
                elif verb == "MAIL":
                    if self.refuse_mail:
                        await say(self.refuse_mail.pop(0))
                        continue
                    state["sender"], state["recipients"] = _address(argument), []
                    await say("250 ok")
                elif verb == "RCPT":
                    state["recipients"].append(_address(argument))
                    await say("250 ok")
                elif verb == "DATA":
                    await say("354 end with <CRLF>.<CRLF>")
                    raw = bytearray()
                    while (data := await reader.readline()) != b".\r\n":
                        if not data:
                            return  # the client hung up mid-message: nothing was accepted
                        raw += data[1:] if data.startswith(b".") else data  # RFC 5321 4.5.2: dot-stuffing
                    async with self._arrived:
                        self.mails.append(Mail(state["sender"], state["recipients"], bytes(raw), state["user"],
                                               state["tls"]))
                        self._arrived.notify_all()
                    await say("250 queued")
                elif verb in ("RSET", "NOOP"):
                    await say("250 ok")
                elif verb == "QUIT":
                    await say("221 bye")
                    break
                else:
                    await say("502 not implemented")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def _address(argument: str) -> str:
    """The address in `FROM:<a@b> SIZE=1` or `TO:<a@b>`."""
    return argument.partition("<")[2].partition(">")[0]
