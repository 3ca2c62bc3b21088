"""Notifications of verdicts (`repositories[].notify`): signed webhooks and e-mail.

`Notifications` observes the client's events (client.events), as commit
statuses do (client.statuses): once a build has its verdict, each target of its
repository whose filters pass (`on`: the verdict's status; `branches`)
gets one notification, handed to a `client.notifier.Notifier`, which sends
it in the background and retries it; `finished` never waits. Every
notification says the same: the verdict, each replying node's result (the
split a disputed build is about) and links to the build's page and, for an
accepted verdict, its certificate.

A webhook is a POST of that as JSON, signed like GitHub's deliveries:
`X-PBFT-CI-Signature-256: sha256=<hex HMAC-SHA256 of the exact body>`
under the target's secret. The body carries its `delivery_id` (the same for
every attempt of one notification) and the `timestamp` of the attempt, so the
signature covers both and a receiver can refuse a replay (docs/notifications.md
has the check). An e-mail is plain text with the same facts, sent with
smtplib in a thread through the client's `smtp` server.

What the notifications carry comes from the verdict and the config alone,
never a secret: HMAC keys and the SMTP password stay in the config objects,
whose repr leaves them out, and in the senders' hands.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
import urllib.parse
import uuid
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from client.events import Event, Finished, OrderCancelled
from client.notifier import DeliveryError, Notification, Notifier, NotifySettings
from client.outcome import Accepted, Disputed, Divergent, TimedOut, Verdict, disputed_reason, disputed_result
from pbft.build import Operation, Result, combination_label
from pbft.deliveries import is_duplicate
from shared.config import NetworkConfig, SMTPConfig
from shared.reload import LiveConfig

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-PBFT-CI-Signature-256"
DELIVERY_HEADER = "X-PBFT-CI-Delivery"
TIMESTAMP_HEADER = "X-PBFT-CI-Timestamp"
EVENT_HEADER = "X-PBFT-CI-Event"
# A node's reason is free text of any length; a notification carries its start.
MAX_REASON_CHARS = 1000
MAX_SUBJECT_CHARS = 200


def notify_status(verdict: Verdict) -> str | None:
    """What a notification calls the verdict (shared.config.NOTIFY_STATUSES), or None when
    there is nothing to tell: a build abandoned at shutdown (followed again after a restart)
    or a matrix's expansion (each of its builds has a verdict of its own)."""
    match verdict.outcome:
        case Disputed():
            return "disputed"
        case Divergent():
            return "divergent"
        case Accepted(result=result):
            return None if result.status == "matrix" else result.status
        case TimedOut():
            return "no_quorum"
    return None


def each_node(verdict: Verdict) -> dict[str, dict[str, Any]]:
    """What each node that replied said, by node id: a disputed build's split, else its replies."""
    if isinstance(verdict.outcome, Disputed):
        results = dict(verdict.outcome.split)
    else:
        results = {}
        for reply in verdict.replies:
            results.setdefault(reply.sender, reply.result)
    return {str(node): _said(results[node]) for node in sorted(results)}


def _said(result: Result) -> dict[str, Any]:
    said: dict[str, Any] = {"status": result.status, "exit_code": result.exit_code, "commit": result.commit}
    if result.reason:
        said["reason"] = result.reason[:MAX_REASON_CHARS]
    if result.artifacts:
        said["artifacts"] = result.artifacts
    return said


def verdict_event(operation: Operation, verdict: Verdict, status: str, f: int, base_url: str) -> dict[str, Any]:
    """The facts every notification of this verdict carries (a webhook's body, less its
    delivery id and timestamp)."""
    commit = exit_code = reason = None
    agreed_by: list[int] = []
    match verdict.outcome:
        case Accepted(result=result, agreed_by=agreed_by):
            commit, exit_code, reason = result.commit, result.exit_code, result.reason or None
        case Divergent(result=result, artifacts_by_node=by_node):
            commit, exit_code = result.commit, result.exit_code
            reason = (f"the nodes built different artifacts ({len(set(by_node.values()))} digests among"
                      f" {len(by_node)} nodes): not reproducible, or a node lies")
        case Disputed(split=split):
            commit, reason = disputed_result(split, f)["commit"], disputed_reason(split)
        case TimedOut(progress=progress):
            reason = f"no {f + 1} nodes agreed on a result before the deadline"
            if progress is not None:
                reason += f" (the build was still {progress} at f+1 nodes)"
    build_url = f"{base_url}/builds/{verdict.build_id}"
    return {
        "event": "verdict",
        "build_id": verdict.build_id,
        "repository": operation.repository,
        "branch": operation.branch,
        "pull_request": operation.pull_request,
        "combination": None if operation.combination is None else combination_label(operation.combination),
        "commit": commit or operation.commit,
        "status": status,
        "exit_code": exit_code,
        "reason": None if reason is None else reason[:MAX_REASON_CHARS],
        "agreed_by": list(agreed_by),
        "split": each_node(verdict),
        "elapsed_ms": verdict.elapsed_ms,
        "urls": {
            "build": f"{base_url}/dashboard/builds/{verdict.build_id}",
            "record": build_url,
            # Only an accepted verdict has f+1 matching signed replies to make one.
            "certificate": f"{build_url}/certificate" if isinstance(verdict.outcome, Accepted) else None,
        },
    }


# --- webhooks ---------------------------------------------------------------------


def webhook_body(event: dict[str, Any], delivery_id: str, timestamp: int) -> bytes:
    return json.dumps({**event, "delivery_id": delivery_id, "timestamp": timestamp}, sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    """The X-PBFT-CI-Signature-256 of `body`: its HMAC-SHA256 under the secret's UTF-8 bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def origin(url: str) -> str:
    """scheme://host[:port] of `url`: what logs may show of a hook, whose path may be a token."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebhookSender:
    """POSTs a verdict to a webhook target, signed anew at each attempt."""

    def __init__(self, session: aiohttp.ClientSession, call_timeout_s: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=call_timeout_s)

    async def __call__(self, notification: Notification) -> None:
        target, event, delivery_id = notification.payload
        timestamp = int(time.time())
        body = webhook_body(event, delivery_id, timestamp)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pbft-ci",
            EVENT_HEADER: "verdict",
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(target.secret, body),
        }
        try:
            # No redirects: a receiver's address comes from the config alone.
            async with self._session.post(target.webhook, data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False) as response:
                code = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            text = str(error).replace(target.webhook, origin(target.webhook))[:200]
            raise DeliveryError(f"{type(error).__name__} {text}".strip(), retry=True) from None
        if 200 <= code < 300:
            return
        if 300 <= code < 400:
            raise DeliveryError(f"HTTP {code}: redirects are not followed, configure the final URL", retry=False)
        raise DeliveryError(f"HTTP {code}", retry=code in (408, 429) or code >= 500)


# --- e-mail -----------------------------------------------------------------------


def header_text(text: str) -> str:
    """`text` fit for a header: nothing that could end it or start another (CR, LF or any other
    unprintable character, Unicode line separators included), and not too long."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:MAX_SUBJECT_CHARS]


def _line(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def subject(event: dict[str, Any]) -> str:
    """e.g. `[pbft-ci] example master: failure (abc1234)`."""
    what = event["branch"]
    if event["pull_request"] is not None:
        what = f"pull request {event['pull_request']} ({what})"
    if event["combination"] is not None:
        what += f" {event['combination']}"
    commit = (event["commit"] or "no commit")[:7]
    return header_text(f"[pbft-ci] {event['repository']} {what}: {event['status']} ({commit})")


def _result_text(said: dict[str, Any]) -> str:
    exit_code = "" if said["exit_code"] is None else f" (exit {said['exit_code']})"
    return f"{said['status']}{exit_code}"


def email_text(event: dict[str, Any], n: int) -> str:
    """The plain-text body: the verdict, each node's result, the links."""
    lines = [
        f"Build {event['build_id']} of {event['repository']}, branch {_line(event['branch'])}: {event['status']}",
        "",
        f"Verdict:      {_result_text(event)}",
    ]
    if event["reason"]:
        lines.append(f"Reason:       {_line(event['reason'])}")
    lines.append(f"Commit:       {event['commit'] or '(none)'}")
    if event["pull_request"] is not None:
        lines.append(f"Pull request: {event['pull_request']}")
    if event["combination"] is not None:
        lines.append(f"Combination:  {_line(event['combination'])}")
    if event["agreed_by"]:
        lines.append(f"Agreed by:    nodes {', '.join(map(str, event['agreed_by']))}")
    lines += ["", "Each node:"]
    for node in range(n):
        said = event["split"].get(str(node))
        if said is None:
            lines.append(f"  node {node}: no reply before the verdict")
        else:
            reason = f": {_line(said['reason'])}" if said.get("reason") else ""
            lines.append(f"  node {node}: {_result_text(said)}, commit {said['commit'] or '(none)'}{reason}")
    lines += ["", f"Build page:   {event['urls']['build']}"]
    if event["urls"]["certificate"]:
        lines.append(f"Certificate:  {event['urls']['certificate']}")
    lines += ["", "-- ", "pbft-ci: a verdict counts once f+1 nodes sign the same result."]
    return "\n".join(lines) + "\n"


def email_message(event: dict[str, Any], sender: str, recipients: tuple[str, ...], delivery_id: str,
                  n: int) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(event)
    message["From"] = sender
    message["To"] = ", ".join(recipients)  # addresses the config checked: no CR, LF or commas of their own
    message["Date"] = formatdate(usegmt=True)
    # The same for every attempt, so a mail reader can tell a resent copy.
    message["Message-ID"] = f"<{delivery_id}.pbft-ci@{sender.rpartition('@')[2]}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    message["X-PBFT-CI-Build"] = header_text(event["build_id"])
    message.set_content(email_text(event, n))
    return message


def send_mail(smtp: SMTPConfig, message: EmailMessage, recipients: tuple[str, ...]) -> None:
    """Send `message` through `smtp`, blocking (asyncio.to_thread runs it); DeliveryError says
    whether trying again may help."""
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as connection:
            connection.ehlo()
            if smtp.starttls:
                context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
                connection.starttls(context=context)
                connection.ehlo()
            if smtp.user:
                connection.login(smtp.user, smtp.password)
            refused = connection.send_message(message, from_addr=smtp.from_address, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        raise DeliveryError(f"every recipient refused: codes {sorted(set(codes))}",
                            retry=all(400 <= code < 500 for code in codes)) from None
    except smtplib.SMTPResponseException as error:
        # 4xx says "later"; 5xx (a refused login among them) will say the same next time.
        answer = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        raise DeliveryError(f"SMTP {error.smtp_code} {_line(str(answer))[:200]}",
                            retry=400 <= error.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as error:
        raise DeliveryError(f"the mail server's certificate: {error.verify_message}", retry=False) from None
    except smtplib.SMTPNotSupportedError as error:
        raise DeliveryError(f"the mail server does not support it: {error}", retry=False) from None
    except (smtplib.SMTPException, OSError) as error:
        # Disconnected, refused, unreachable or timed out (SMTPException is an OSError).
        raise DeliveryError(f"{type(error).__name__} {_line(str(error))[:200]}".strip(), retry=True) from None
    if refused:
        log.warning("mail server refused %d of %d recipients: %s", len(refused), len(recipients),
                    {address: code for address, (code, _) in refused.items()})


class EmailSender:
    """Mails a verdict through the client's SMTP server, off the event loop."""

    def __init__(self, smtp: SMTPConfig, n: int) -> None:
        self._smtp = smtp
        self._n = n

    async def __call__(self, notification: Notification) -> None:
        target, event, delivery_id = notification.payload
        message = email_message(event, self._smtp.from_address, target.email, delivery_id, self._n)
        # A thread cannot be cancelled: a stopping client leaves it to end within smtp.timeout_s.
        await asyncio.to_thread(send_mail, self._smtp, message, target.email)


# --- the observer of the client's events --------------------------------------------


class Notifications:
    """Turns verdicts into notifications (an observer of client.events)."""

    def __init__(self, config: NetworkConfig, client_name: str, notifier: Notifier) -> None:
        self._client_name = client_name
        self.reconfigure(config)
        self._f = config.f
        self._notifier = notifier

    def reconfigure(self, config: NetworkConfig) -> None:
        """Notify `config`'s targets from now on (a reload, shared.reload); notifications
        already queued go where they were addressed."""
        self._targets = {repo.name: repo.notify for repo in config.repositories if repo.notify}
        self._base_url = config.client(self._client_name).base_url

    def observe(self, event: Event) -> None:
        match event:
            case Finished(operation=operation, verdict=verdict) | OrderCancelled(operation=operation, verdict=verdict):
                self._finished(operation, verdict)

    def _finished(self, operation: Operation, verdict: Verdict) -> None:
        targets = self._targets.get(operation.repository, ())
        status = notify_status(verdict)
        # A cancel's verdict is the build's; an approval's is the deploy's, which the runner reports.
        if not targets or status is None or operation.cancels is not None or operation.approves is not None:
            return
        if isinstance(verdict.outcome, Accepted) and is_duplicate(operation, verdict.outcome.result):
            return  # its delivery's build is the one to tell of
        event = None
        for index, target in enumerate(targets):
            if status not in target.on or (target.branches and operation.branch not in target.branches):
                continue
            event = event or verdict_event(operation, verdict, status, self._f, self._base_url)
            kind = "webhook" if target.webhook else "email"
            where = f"{operation.repository} notify[{index}] " + (
                f"({origin(target.webhook)})" if target.webhook else f"({len(target.email)} recipients)")
            self._notifier.send(Notification(kind, verdict.build_id, where, (target, event, uuid.uuid4().hex)))


def notifications_ctx(
    live: LiveConfig, client_name: str, service_key: web.AppKey, count: Callable[[str, str], None],
    settings: NotifySettings = NotifySettings(),
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that sends notifications of the app's service's verdicts; it must come
    after the service's. `count(kind, outcome)` is told how each ended (client.metrics).
    The notifier runs even when no repository has targets yet: a reload may add some."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = live.current
        names = [repo.name for repo in config.repositories if repo.notify]
        if names:
            log.info("sending notifications of the verdicts of %s", ", ".join(names))
        # No cookies: a receiver's answer must not change what the next delivery sends.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            senders = {"webhook": WebhookSender(session, settings.call_timeout_s)}
            smtp = config.client(client_name).smtp
            if smtp is not None:  # shared.config refuses an e-mail target without it
                senders["email"] = EmailSender(smtp, config.n)
            notifier = Notifier(senders, settings, count)
            notifier.start()
            notifications = Notifications(config, client_name, notifier)
            live.on_reload(notifications.reconfigure)
            app[service_key].events.subscribe(notifications.observe)
            yield
            await notifier.close()

    return ctx
