"""Insights in a real Chromium, on the demo organization: the charts, their tables and a
filtered view, with and without JavaScript. Screenshots of the page and of a filtered view are
saved to ``screenshots/`` (``insights.png``, ``insights-filtered.png``)."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from .conftest import make_app
from .test_browser import browser, screenshot  # noqa: F401 - the module's Chromium fixture
from .test_cli import DEMO_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


@pytest.fixture
def demo_served(tmp_path):
    """The demo organization (``flask --app app demo``) served on 127.0.0.1."""
    app = make_app(tmp_path)
    output = app.test_cli_runner().invoke(args=["demo"]).output
    password = DEMO_PASSWORD.search(output).group(1)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", password
    server.shutdown()
    thread.join()


def _signed_in(browser, base_url: str, password: str, **options):  # noqa: F811
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 900}, **options
    )
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Email").fill("owner@demo.example")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/inbox")
    return context, page


def _charts_drawn(page) -> int:
    return page.evaluate(
        "Array.from(document.querySelectorAll('img.chart-image'))"
        ".filter(img => img.complete && img.naturalWidth > 0).length"
    )


def test_insights_on_the_demo_with_a_filtered_view(browser, demo_served):  # noqa: F811
    base_url, password = demo_served
    context, page = _signed_in(browser, base_url, password)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Insights").click()
    page.wait_for_url("**/insights")
    assert page.get_by_role("heading", level=1).inner_text() == "Insights"
    assert _charts_drawn(page) == 8
    page.screenshot(path=str(screenshot_path("insights-top.png")))  # the docs' picture
    discount = page.locator("#discount")
    discount.get_by_text("Show table").click()
    assert discount.get_by_role("table").is_visible()
    assert discount.get_by_role("columnheader", name="Discount (USD)").is_visible()
    screenshot(page, "insights.png")

    page.get_by_label("Requester", exact=True).select_option(label="Rita Rep")
    page.get_by_label("By", exact=True).select_option("month")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/insights?*requested_by=*")
    assert "group_by=month" in page.url
    assert page.get_by_label("Requester", exact=True).input_value() != ""
    assert _charts_drawn(page) == 8
    rows = page.locator("#requesters-by-count tbody tr")
    assert rows.count() == 1 and "Rita Rep" in rows.text_content()
    screenshot(page, "insights-filtered.png")

    with page.expect_download() as download:
        page.locator("#discount").get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("insights-discount-")
    context.close()


def test_the_charts_and_tables_need_no_javascript(browser, demo_served):  # noqa: F811
    base_url, password = demo_served
    context, page = _signed_in(browser, base_url, password, java_script_enabled=False)
    page.goto("/insights?group_by=month")
    assert _charts_drawn(page) == 8  # (Playwright's own evaluation runs; the page's would not)
    outcomes = page.locator("#outcomes")
    outcomes.get_by_text("Show table").click()  # a native disclosure
    assert outcomes.get_by_role("table").is_visible()
    context.close()


def screenshot_path(name: str):
    from .test_browser import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name
