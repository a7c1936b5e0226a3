"""Settings' sections are tabs: one list, on every Settings page, with the current one marked."""

from __future__ import annotations

import re

import pytest

from .dashboard import nav_links, sign_in

TABS = [
    "General",
    "Members",
    "Approval levels",
    "Products",
    "Webhooks",
    "Notifications",
    "Audit",
    "API Keys",
]


def _current(page) -> list[str]:
    nav = re.search(r'<nav aria-label="Settings" class="tabs">(.*?)</nav>', page.text, re.S)
    assert nav, "no Settings tabs on the page"
    return re.findall(r'aria-current="page">([^<]+)</a>', nav.group(1))


@pytest.mark.parametrize(
    ("path", "tab"),
    [
        ("/settings/organization", "General"),
        ("/settings/members", "Members"),
        ("/settings/approval-levels", "Approval levels"),
        ("/settings/products", "Products"),
        ("/settings/products/new", "Products"),
        ("/settings/products/import", "Products"),
        ("/settings/webhooks", "Webhooks"),
        ("/settings/notifications", "Notifications"),
        ("/settings/audit", "Audit"),
        ("/settings/api-keys", "API Keys"),
        ("/settings/api-keys/revoke?slot=full", "API Keys"),
    ],
)
def test_every_settings_page_shows_the_tabs_with_its_own_marked(client, world, path, tab):
    sign_in(client, "owner@acme.example")
    page = client.get(path)
    assert page.status_code == 200, path
    assert nav_links(page, "Settings") == TABS
    assert _current(page) == [tab]


def test_a_new_keys_page_is_under_the_api_keys_tab(client, world):
    from .test_dashboard_auth import _generate

    sign_in(client, "owner@acme.example")
    page, _ = _generate(client)
    assert page.status_code == 200
    assert _current(page) == ["API Keys"]


def test_a_removals_confirmation_is_under_the_members_tab(client, world):
    sign_in(client, "owner@acme.example")
    page = client.get(f"/settings/members/{world.people['rep']}/remove")
    assert page.status_code == 200
    assert _current(page) == ["Members"]


def test_admins_have_every_tab_but_api_keys(client, world):
    sign_in(client, "admin@acme.example")
    page = client.get("/settings/members")
    assert nav_links(page, "Settings") == TABS[:-1]
    assert _current(page) == ["Members"]


def test_members_have_the_notifications_tab_marked(client, world):
    sign_in(client, "rep@acme.example")
    page = client.get("/settings/notifications")
    assert nav_links(page, "Settings") == ["Notifications"]
    assert _current(page) == ["Notifications"]


def test_the_tabs_are_styled_as_tabs(client):
    with client.get("/static/dashboard/dashboard.css") as css:
        assert '.tabs a[aria-current="page"]' in css.text
