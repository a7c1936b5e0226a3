"""The documentation in a real Chromium: the pages a newcomer reads first, and the search box.

Screenshots ``docs-quick-start.png`` and ``docs-authentication.png`` (the staging banner in view)
are saved beside the dashboard's (``screenshots/``)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .test_browser import browser, screenshot, served  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]  # as test_browser.py


@pytest.fixture
def reader(browser, served):  # noqa: F811 - the fixtures above
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_a_newcomer_reads_the_quick_start_and_the_authentication_page(reader, served):  # noqa: F811
    reader.goto("/docs/")
    reader.get_by_role("link", name="Get started").first.click()
    assert reader.url.endswith("/docs/quick-start")
    banner = reader.get_by_role("note")
    assert banner.inner_text() == "⚠️ This documentation applies to the Staging environment."
    assert banner.is_visible()
    assert reader.get_by_role("heading", level=1).inner_text() == "Get started"
    screenshot(reader, "docs-quick-start.png")

    reader.get_by_role("navigation", name="Documentation").get_by_role(
        "link", name="Authentication"
    ).click()
    crumbs = reader.get_by_role("navigation", name="Breadcrumb").inner_text()
    assert crumbs.split() == ["Documentation", "API", "References", "Authentication"]  # "/" is CSS
    examples = reader.locator("pre").all_inner_texts()
    assert f"Host: {served.base_url.removeprefix('http://')}" in examples[1]
    assert f"{served.base_url}/v2/me" in examples[2]
    assert reader.get_by_role("note").is_visible()
    screenshot(reader, "docs-authentication.png")

    reader.get_by_role("link", name="← Back to Home").click()
    assert reader.url.endswith("/sign-in")


def test_the_search_box_finds_headings_without_a_network(reader):
    reader.route(
        "**/*",
        lambda route: route.abort() if "127.0.0.1" not in route.request.url else route.continue_(),
    )
    reader.goto("/docs/")
    reader.get_by_label("Search the documentation").fill("rotating keys")
    result = reader.locator("#docs-results a").first
    assert result.inner_text() == "🔄 Rotating API Keys"
    result.click()
    assert reader.url.endswith("/docs/api/authentication#rotating-api-keys")
    # The search box is in the new page's HTML before its script listens; typing into it earlier
    # is typing into a box that does not search yet (CI once did, and found nothing shown).
    reader.wait_for_load_state()
    reader.get_by_label("Search the documentation").fill("zzz no such thing")
    expect(reader.locator("#docs-results")).to_have_text("Nothing found.")
