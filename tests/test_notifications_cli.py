"""Email notifications as an operator meets them: MAIL_URL at start, ``flask notifications
test``, the worker process (``flask webhooks work``) sending them, and their counts in
/metrics."""

from __future__ import annotations

import pytest

from discountflow import create_app
from discountflow.config import ConfigurationError
from discountflow.notifications.worker import Mailer

from .approvals_world import create
from .conftest import MAIL_PUBLIC_URL, mailing_app, make_app
from .mailbox import free_port
from .test_metrics import TOKEN, scrape, value

PUBLIC = MAIL_PUBLIC_URL


@pytest.fixture
def app(request, tmp_path, mailbox):
    return mailing_app(request, tmp_path, mailbox, METRICS_TOKEN=TOKEN)


def _config(tmp_path, **settings):
    return {
        "TESTING": True,
        "SECRET_KEY": "Zq8v3LmX0bT7nR4wK1yH6cJ9pF2sD5gAe0Uo",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'config.sqlite'}",
        **settings,
    }


@pytest.mark.parametrize(
    ("url", "environment", "refusal"),
    [
        ("mail.example.com", "staging", "MAIL_URL must look like smtp://"),
        ("https://u:hunter2@mail.example.com", "staging", "MAIL_URL must look like"),
        ("smtp://u:hunter2@mail.example.com:587", "staging", "needs the sender's address"),
        ("smtp://u:hunter2@mail.example.com/?from=a@b.example&tls=no", "staging", "takes only"),
        ("smtp://u:hunter2@mail.example.com:99999/?from=a@b.example", "staging", "must look"),
        ("smtp://u:hunter2@mail.example.com:25/?from=a@b.example", "production", "plain text"),
        ("smtp://u:hunter2@mail.example.com:587/?from=a@b.example", "production", "PUBLIC_URL"),
    ],
)
def test_an_unusable_mail_url_stops_the_start_without_showing_its_password(
    tmp_path, url, environment, refusal
):
    with pytest.raises(ConfigurationError, match=refusal) as refused:
        create_app(_config(tmp_path, MAIL_URL=url, DISCOUNTFLOW_ENV=environment))
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "environment"),
    [
        ("smtp://u:p@mail.example.com:587/?from=approvals@example.com", "production"),
        ("smtps://u:p@mail.example.com/?from=approvals@example.com", "production"),
        ("smtp://127.0.0.1:1025/?from=approvals@example.com", "production"),  # loopback
        ("smtp://relay.example.com:25/?from=approvals@example.com", "staging"),
        ("smtp://approvals%40example.com:p@mail.example.com", "staging"),  # the user's address
    ],
)
def test_usable_mail_urls(tmp_path, url, environment):
    app = create_app(
        _config(tmp_path, MAIL_URL=url, DISCOUNTFLOW_ENV=environment, PUBLIC_URL=PUBLIC)
    )
    assert app.config["MAIL_URL"] == url


def test_the_test_command_sends_through_mail_url(app, mailbox):
    result = app.test_cli_runner().invoke(args=["notifications", "test", "ops@acme.example"])
    assert result.exit_code == 0, result.output
    port = mailbox.url.split(":")[2].split("/")[0]
    assert result.output == (
        f"Sent a test email to ops@acme.example through smtp://127.0.0.1:{port} (plain).\n"
    )
    (received,) = mailbox.received
    assert received.rcpt_tos == ["ops@acme.example"]
    assert received.message["Subject"] == "DiscountFlow test email"
    assert f"{PUBLIC}/" in received.message.get_content()


def test_the_test_command_says_why_it_failed(tmp_path):
    url = f"smtp://mailer:hunter2@127.0.0.1:{free_port()}/?from=approvals@acme.example"
    app = make_app(tmp_path, MAIL_URL=url)
    result = app.test_cli_runner().invoke(args=["notifications", "test", "ops@acme.example"])
    assert result.exit_code == 1
    assert "The test email to ops@acme.example was not sent: ConnectionRefusedError" in (
        result.output
    )
    assert "hunter2" not in result.output


def test_the_test_command_without_mail_url_writes_to_the_log(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["notifications", "test", "ops@acme.example"])
    assert result.exit_code == 0, result.output
    assert "through the log (MAIL_URL is not set)" in result.output
    refused = app.test_cli_runner().invoke(args=["notifications", "test", "ops@x\r\nBcc: y"])
    assert refused.exit_code == 1 and "is not an email address" in refused.output


def test_the_worker_process_sends_the_emails_and_counts_them(app, world, mailbox):
    client = app.test_client()
    before = scrape(client)
    create(world, "rep", 20, submit=True)
    result = app.test_cli_runner().invoke(args=["webhooks", "work", "--burst"])
    assert result.exit_code == 0, result.output
    assert mailbox.recipients == ["manager2@acme.example", "manager@acme.example"]
    after = scrape(client)
    name = "discountflow_notifications_total"
    sent = value(after, name, channel="email", outcome="sent")
    assert sent - value(before, name, channel="email", outcome="sent") == 2
    assert value(after, name, channel="email", outcome="failed") >= 0  # always exposed
    assert (name, (("channel", "email"), ("outcome", "failed"))) in {
        (key, labels) for key, labels in _samples(after)
    }


def test_emails_that_fail_are_counted_as_retrying_or_failed(app, world, mailbox):
    """What Settings → Notifications shows an owner (last attempts, errors) an operator sees on
    /metrics: an email the server puts off is retrying, one it refuses for good is failed."""
    client = app.test_client()
    before = scrape(client)
    mailbox.refuse["manager@acme.example"] = "451 4.3.0 Try again later"
    mailbox.refuse["manager2@acme.example"] = "550 5.1.1 No such user"
    create(world, "rep", 20, submit=True)
    with app.app_context():
        assert Mailer().run_once() == 2
    after = scrape(client)
    name = "discountflow_notifications_total"
    for outcome, more in (("sent", 0), ("retrying", 1), ("failed", 1)):
        counted = value(after, name, channel="email", outcome=outcome)
        assert counted - value(before, name, channel="email", outcome=outcome) == more, outcome


def _samples(body: bytes):
    from .test_metrics import samples

    return samples(body)
