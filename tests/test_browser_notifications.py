"""Settings → Notifications in a real Chromium: an admin adds a chat destination and sends it a
test message; a member changes "My notifications". Screenshots: ``notifications-destination.png``
and ``notifications-mine.png``."""

from __future__ import annotations

import pytest

from discountflow.notifications.worker import Mailer

from .receiver import Receiver
from .test_browser import browser, person, screenshot, served  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def test_an_admin_sets_up_a_destination_and_a_member_chooses_their_emails(person, served):  # noqa: F811
    with Receiver() as receiver:
        admin = person("admin")
        admin.get_by_role("link", name="Settings").click()
        admin.get_by_role("navigation", name="Settings").get_by_role(
            "link", name="Notifications"
        ).click()
        admin.get_by_role("heading", name="Chat and push").wait_for()
        admin.get_by_label("Name").fill("#sales-approvals")
        url = f"json://bot:s3cret-token@127.0.0.1:{receiver.server.server_port}/chat"
        admin.get_by_label("Apprise URL").fill(url)
        admin.get_by_label("A request is commented on").uncheck()
        admin.get_by_role("button", name="Add destination").click()
        admin.get_by_role("heading", name="#sales-approvals").wait_for()
        assert "s3cret-token" not in admin.content()
        admin.get_by_role("button", name="Send test message").click()
        admin.get_by_text("A test message was queued").wait_for()
        with served.app.app_context():
            assert Mailer().run_once() == 1
        (posted,) = receiver.wait_for(1)
        assert posted.json["title"] == "DiscountFlow test message"
        admin.reload()
        attempts = admin.locator("table.data").first
        assert attempts.get_by_role("cell", name="Sent", exact=True).count() == 1
        screenshot(admin, "notifications-destination.png")

    rep = person("rep")
    rep.get_by_role("link", name="Settings").click()
    rep.get_by_role("heading", name="My notifications").wait_for()
    assert rep.get_by_role("heading", name="Chat and push").count() == 0
    rep.get_by_label("Someone comments on a request I took part in").uncheck()
    rep.get_by_label("Once a day, together (a daily digest)").check()
    rep.get_by_label("The digest comes at").select_option("16:00 UTC")
    rep.get_by_role("button", name="Save my notifications").click()
    rep.get_by_text("Your notifications were saved.").wait_for()
    assert not rep.get_by_label("Someone comments on a request I took part in").is_checked()
    assert rep.get_by_label("Once a day, together (a daily digest)").is_checked()
    assert rep.get_by_label("The digest comes at").input_value() == "16"
    screenshot(rep, "notifications-mine.png")
