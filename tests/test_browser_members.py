"""Settings → Members in a real Chromium: an admin removes the VP, who is signed in elsewhere;
the confirmation warns that the VP is the last approver at their level. Screenshot:
``members-remove.png``."""

from __future__ import annotations

import pytest

from .approvals_world import act, create
from .conftest import PASSWORD
from .test_browser import browser, person, screenshot, served  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def test_an_admin_removes_a_member_who_is_signed_out_at_once(person, served):  # noqa: F811
    approval_id = create(served, "rep", 20, submit=True)
    act(served, "manager", "approve", approval_id)  # it waits at VP now
    vp = person("vp")
    vp.get_by_role("link", name="Inbox").click()
    assert vp.get_by_role("link", name="Deal").count() == 1  # it waits for them

    admin = person("admin")
    admin.get_by_role("link", name="Settings").click()
    admin.get_by_role("navigation", name="Settings").get_by_role("link", name="Members").click()
    admin.get_by_role("link", name="Remove vp@acme.example").click()
    admin.get_by_role("heading", name="Remove vp@acme.example from the organization?").wait_for()
    warning = "vp@acme.example is the only approver at VP: 1 request waits there now"
    assert warning in admin.get_by_role("alert").inner_text()
    current = admin.get_by_role("navigation", name="Settings").locator('[aria-current="page"]')
    assert current.inner_text() == "Members"
    screenshot(admin, "members-remove.png")
    admin.get_by_role("button", name="Remove member").click()
    admin.get_by_text("vp@acme.example was removed and signed out everywhere.").wait_for()
    rows = admin.locator("table.data").get_by_role("row")
    assert rows.filter(has_text="vp@acme.example").count() == 0
    assert rows.filter(has_text="manager@acme.example").count() == 1

    vp.reload()  # their session ended with the removal: the next page asks them to sign in
    vp.wait_for_url("**/sign-in**")
    vp.get_by_label("Email").fill("vp@acme.example")
    vp.get_by_label("Password").fill(PASSWORD)  # the right password: no door for them
    vp.get_by_role("button", name="Sign in").click()
    vp.get_by_role("alert").wait_for()
    assert "/sign-in" in vp.url
