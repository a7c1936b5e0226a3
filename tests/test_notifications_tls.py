"""MAIL_URL's security, against real SMTP servers on loopback with real certificates (trustme's
test CA, trusted through SSL_CERT_FILE as an operator's own CA would be): ``smtp://`` requires
STARTTLS and sends the password only inside it, ``smtps://`` speaks TLS from the first byte, and
a server without STARTTLS or with a certificate nobody vouches for gets nothing at all."""

from __future__ import annotations

import dataclasses
import ssl
from email.message import EmailMessage

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from discountflow.config import mail_server
from discountflow.notifications.mail import Sent, SmtpTransport

from .mailbox import Mailbox, free_port

SENDER = "approvals@example.com"
USER, PASSWORD = "approvals", "s3cret-pass"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca, tmp_path, monkeypatch):
    """The machine trusts the test CA: the service's own default context reads it."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))


class Logins:
    """An authenticator that keeps every login it saw, and whether it came over TLS."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        # Inside TLS: upgraded by STARTTLS (session.ssl), or TLS from the start (the transport).
        inside = session.ssl is not None or server.transport.get_extra_info("ssl_object")
        self.seen.append((password, bool(inside)))
        return AuthResult(success=(user, password) == (USER, PASSWORD))


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def serve(mailbox: Mailbox, **options) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller


def send(url: str, port: int, environment: str = "production") -> Sent:
    """Send one email as the service would for ``url``, to the server on loopback at ``port``
    (the URL names a host of the network, so its security is what production would use)."""
    server = dataclasses.replace(mail_server(url, environment), host="127.0.0.1", port=port)
    message = EmailMessage()
    message["Subject"] = "Approve 18 % on ACME renewal — 12,400.00 USD"
    message["From"] = SENDER
    message["To"] = "vp@acme.example"
    message.set_content("Sign in to decide.")
    [outcome] = SmtpTransport(server, timeout=5).send_each([("vp@acme.example", message)])
    return outcome


STARTTLS_URL = f"smtp://{USER}:{PASSWORD}@mail.example.com/?from={SENDER}"
TLS_URL = f"smtps://{USER}:{PASSWORD}@mail.example.com/?from={SENDER}"


def test_the_url_chooses_starttls_on_587_and_tls_on_465():
    server = mail_server(STARTTLS_URL, "production")
    assert (server.port, server.security) == (587, "starttls")
    server = mail_server(TLS_URL, "production")
    assert (server.port, server.security) == (465, "tls")
    # Any other port of a network host is STARTTLS too; only port 25 may be plain (staging).
    assert mail_server(STARTTLS_URL.replace(".com/", ".com:2525/"), "staging").security == (
        "starttls"
    )


def test_smtp_upgrades_with_starttls_and_logs_in_only_inside_it(ca, trusted):
    mailbox, logins = Mailbox(), Logins()
    controller = serve(
        mailbox,
        tls_context=server_context(ca),
        require_starttls=True,  # the server answers nothing but STARTTLS before it
        authenticator=logins,
        auth_require_tls=True,
    )
    try:
        assert send(STARTTLS_URL, controller.port) == Sent(True)
    finally:
        controller.stop()
    assert logins.seen == [(PASSWORD, True)]
    [received] = mailbox.received
    assert received.rcpt_tos == ["vp@acme.example"]
    assert received.message["Subject"] == "Approve 18 % on ACME renewal — 12,400.00 USD"


def test_smtps_speaks_tls_from_the_first_byte(ca, trusted):
    mailbox, logins = Mailbox(), Logins()
    controller = serve(
        mailbox, ssl_context=server_context(ca), authenticator=logins, auth_require_tls=False
    )
    try:
        assert send(TLS_URL, controller.port) == Sent(True)
    finally:
        controller.stop()
    assert logins.seen == [(PASSWORD, True)]
    assert [each.rcpt_tos for each in mailbox.received] == [["vp@acme.example"]]


def test_a_server_without_starttls_gets_no_password_and_no_email(trusted):
    """A server (or someone in the middle) that does not offer STARTTLS is not given the
    password in plain text, nor the email: the attempt fails and says why."""
    mailbox, logins = Mailbox(), Logins()
    controller = serve(mailbox, authenticator=logins, auth_require_tls=False)
    try:
        outcome = send(STARTTLS_URL, controller.port)
    finally:
        controller.stop()
    assert outcome.ok is False and outcome.permanent is False
    assert "does not offer STARTTLS, which MAIL_URL requires" in outcome.error
    assert PASSWORD not in outcome.error
    assert logins.seen == [] and mailbox.received == []


@pytest.mark.parametrize("url", [STARTTLS_URL, TLS_URL], ids=["starttls", "tls"])
def test_a_certificate_nobody_vouches_for_gets_nothing(ca, url, tmp_path, monkeypatch):
    """The same servers, but the machine does not trust their CA: no login, no email."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    mailbox, logins = Mailbox(), Logins()
    if url == TLS_URL:
        options = {"ssl_context": server_context(ca)}
    else:
        options = {"tls_context": server_context(ca), "require_starttls": True}
    controller = serve(mailbox, authenticator=logins, auth_require_tls=False, **options)
    try:
        outcome = send(url, controller.port)
    finally:
        controller.stop()
    assert outcome.ok is False
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert PASSWORD not in outcome.error
    assert logins.seen == [] and mailbox.received == []
