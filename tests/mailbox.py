"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the tests."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


@dataclass
class Mailbox:
    """What the server received, in order; ``refuse`` maps an address to the reply its RCPT
    gets (``"451 …"``: try later, ``"550 …"``: never)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    url: str = ""
    # The DATA of these messages (by number, from 1) waits for the event, then is refused as
    # a server closing does (421): it was never accepted. ``stalled`` is set when one waits.
    stall: dict[int, threading.Event] = field(default_factory=dict)
    stalled: threading.Event = field(default_factory=threading.Event)
    # The DATA of these messages (by number, from 1) is accepted only after so many seconds.
    slow: dict[int, float] = field(default_factory=dict)
    data_count: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.data_count += 1
        held = self.stall.get(self.data_count)
        if held is not None:
            self.stalled.set()
            await asyncio.get_running_loop().run_in_executor(None, held.wait, 60)
            return "421 Closing the connection"
        if self.data_count in self.slow:
            await asyncio.sleep(self.slow[self.data_count])
        message = email.message_from_bytes(envelope.original_content, policy=default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Received]:
        return [each for each in self.received if address in each.rcpt_tos]

    @property
    def recipients(self) -> list[str]:
        return sorted(address for each in self.received for address in each.rcpt_tos)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_mailbox() -> tuple[Mailbox, Controller]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.url = f"smtp://127.0.0.1:{port}/?from=DiscountFlow%20%3Capprovals@acme.example%3E"
    return mailbox, controller
