"""Sending email: over SMTP as ``MAIL_URL`` says (``smtplib``), or, without it, to the log.

One connection per batch; each outcome is handed back as soon as the server answered (the
worker records it at once, so a worker killed mid-batch does not send again what was already
accepted). The envelope names exactly the one recipient the service computed,
never an address read from the message's headers. The password appears in no error and no log.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from ..config import MailServer, mail_server
from .messages import LOG_SENDER, envelope_sender

log = logging.getLogger("discountflow.notifications")


@dataclass(frozen=True)
class Sent:
    """How one attempt to send an email ended."""

    ok: bool
    error: str = ""
    permanent: bool = False  # refused for good (a 5xx about this message): no retry


Outcomes = Generator[Sent, None, None]  # closed early, it closes its connection


class Transport(Protocol):
    sender: str
    shown: str

    def send_each(self, messages: list[tuple[str, EmailMessage]]) -> Outcomes: ...


class LogTransport:
    """No MAIL_URL: each email is one line of the log (recipient and subject, never the body),
    so the demo and local staging never fail for want of a mail server."""

    sender = LOG_SENDER
    shown = "the log (MAIL_URL is not set)"

    def send_each(self, messages: list[tuple[str, EmailMessage]]) -> Outcomes:
        for recipient, message in messages:
            log.info(
                "email to %s: %s (MAIL_URL is not set: written to the log, not sent)",
                recipient,
                message["Subject"],
            )
            yield Sent(True)


class SmtpTransport:
    """SMTP with TLS (``smtps://``), STARTTLS required (``smtp://``), or plain text where the
    configuration allows it (a loopback host; port 25 in staging)."""

    def __init__(self, server: MailServer, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self.sender = server.sender
        self.shown = server.shown

    def connect(self) -> smtplib.SMTP:
        server = self.server
        context = ssl.create_default_context()
        if server.security == "tls":
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                server.host, server.port, timeout=self.timeout, context=context
            )
        else:
            connection = smtplib.SMTP(server.host, server.port, timeout=self.timeout)
        try:
            connection.ehlo()
            if server.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise smtplib.SMTPNotSupportedError(
                        "the server does not offer STARTTLS, which MAIL_URL requires (use "
                        "smtps:// for TLS from the start)"
                    )
                connection.starttls(context=context)
                connection.ehlo()
            if server.username:
                connection.login(server.username, server.password)
        except BaseException:
            _close(connection)
            raise
        return connection

    def send_each(self, messages: list[tuple[str, EmailMessage]]) -> Outcomes:
        connection: smtplib.SMTP | None = None
        from_address = envelope_sender(self.sender)
        try:
            for recipient, message in messages:
                try:
                    if connection is None:
                        connection = self.connect()
                    connection.send_message(message, from_address, [recipient])
                    yield Sent(True)
                except smtplib.SMTPRecipientsRefused as refused:
                    code, answer = next(iter(refused.recipients.values()))
                    yield _refused(code, answer)
                except smtplib.SMTPAuthenticationError as error:  # fixed by the operator
                    yield Sent(False, f"authentication failed: {error.smtp_code}")
                    _close(connection)
                    connection = None
                except smtplib.SMTPResponseException as error:
                    yield _refused(error.smtp_code, error.smtp_error)
                    if error.smtp_code == 421 or not 400 <= error.smtp_code < 600:
                        _close(connection)
                        connection = None
                except (smtplib.SMTPException, OSError) as error:
                    yield Sent(False, _described(error))
                    _close(connection)
                    connection = None
        finally:
            if connection is not None:
                _close(connection, polite=True)


def _refused(code: int, answer: bytes | str) -> Sent:
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    return Sent(False, f"SMTP {code}: {text}"[:500], permanent=500 <= code < 600)


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def _close(connection: smtplib.SMTP | None, polite: bool = False) -> None:
    if connection is None:
        return
    try:
        connection.quit() if polite else connection.close()
    except (smtplib.SMTPException, OSError):
        connection.close()


def transport_for(config: dict) -> Transport:
    """The transport ``MAIL_URL`` asks for (the log without one)."""
    url = config.get("MAIL_URL")
    if not url:
        return LogTransport()
    server = mail_server(str(url), config["DISCOUNTFLOW_ENV"])
    return SmtpTransport(server, float(config["WEBHOOK_TIMEOUT_SECONDS"]))
