"""End to end in a real Chromium (Debian's package, driven by Playwright) against the app served
on loopback: what a person sees and does in the dashboard.

Screenshots of the key page and the approval page are saved to ``screenshots/`` (git-ignored;
``SCREENSHOTS_DIR`` moves it). Without Chromium these tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from .approvals_world import build_world
from .conftest import PASSWORD, make_app

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / "screenshots"))
CHROMIUM = next(
    (
        path
        for path in (os.environ.get("CHROMIUM"), "/usr/bin/chromium")
        if path and Path(path).exists()
    ),
    shutil.which("chromium"),
)

# Once, on the SQLite run: the pages are the same on either database, and the services under
# them are tested on both (the PostgreSQL run repeated a minute of browsing for nothing).
pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium (see .ci/run)")
        pytest.skip("no Chromium here (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path):
    """The app with the approvals world, served by a real HTTP server on 127.0.0.1."""
    app = make_app(tmp_path)
    world = build_world(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    world.base_url = f"http://127.0.0.1:{server.server_port}"
    yield world
    server.shutdown()
    thread.join()


@pytest.fixture
def person(browser, served):
    """Open a fresh browser context (its own cookies) signed in as someone."""
    contexts = []

    def sign_in(who: str):
        context = browser.new_context(
            base_url=served.base_url,
            permissions=["clipboard-read", "clipboard-write"],
            viewport={"width": 1280, "height": 900},
        )
        contexts.append(context)
        page = context.new_page()
        page.goto("/sign-in")
        page.get_by_label("Email").fill(f"{who}@acme.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/inbox")
        return page

    yield sign_in
    for context in contexts:
        context.close()


def api_status(base_url: str, key: str, path: str = "/v2/approvals") -> tuple[int, dict]:
    request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_the_owner_generates_copies_uses_and_revokes_a_key(person, served):
    page = person("owner")
    # The documented path: Settings → API Keys.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API Keys").click()
    full = page.locator("section.key-slot").first
    assert full.get_by_test_id("status-full").inner_text() == "Active"  # the world's key
    # The key exists (the world's), so the documented button reads "Generate New Key".
    assert full.get_by_role("button", name="Generate API Key").count() == 0
    full.get_by_role("button", name="Generate New Key").click()
    page.get_by_text("It will not be shown again").wait_for()
    shown = page.get_by_test_id("new-key").input_value()
    assert shown.startswith("sk_test_")
    assert shown not in page.url
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied.").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    screenshot(page, "api-key-generated.png")

    status, body = api_status(served.base_url, copied)
    assert status == 200 and body["object"] == "list"
    assert api_status(served.base_url, served.key)[0] == 401  # generating ended the old key

    page.go_back()  # back to the tab: the key is nowhere
    assert copied not in page.content()
    page.goto("/settings/api-keys")
    assert copied not in page.content()
    assert page.get_by_test_id("status-full").inner_text() == "Active"
    last_used = page.get_by_test_id("last-used-full")
    assert last_used.inner_text() != "Never"
    assert "UTC" in last_used.locator("time").get_attribute("title")
    screenshot(page, "api-keys-tab.png")

    page.locator("section.key-slot").first.get_by_role("link", name="Revoke API Key").click()
    page.get_by_text("There is no undo").wait_for()
    page.get_by_role("button", name="Revoke API Key").click()
    page.wait_for_url("**/settings/api-keys")
    assert page.get_by_test_id("status-full").inner_text() == "No API key generated"
    # An empty slot offers "Generate API Key", as the Manage API keys page says.
    empty = page.locator("section.key-slot").first
    assert empty.get_by_role("button", name="Generate API Key").count() == 1
    assert empty.get_by_role("button", name="Generate New Key").count() == 0
    status, body = api_status(served.base_url, copied)
    assert status == 401
    assert body == {
        "error": "invalid_api_key",
        "message": "The provided API key is invalid or expired.",
    }


def test_an_admin_sees_no_api_tab_and_its_url_is_not_found(person, served):
    page = person("admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    tabs = page.get_by_role("navigation", name="Settings")
    assert tabs.get_by_role("link", name="Approval levels").count() == 1
    assert tabs.get_by_role("link", name="API Keys").count() == 0
    assert page.get_by_role("link", name="API Keys").count() == 0
    response = page.goto("/settings/api-keys")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").count() == 1


def test_a_member_requests_an_approver_approves_the_requester_sees_it(person, served):
    rep = person("rep")
    rep.get_by_role("link", name="New request").click()
    rep.get_by_label("Title").fill("Initech expansion")
    rep.get_by_label("Customer").fill("Initech")
    # The product comes from the price book (searchable by SKU or name); its list price is the
    # book's, shown read-only, and the typed list price is for custom lines only.
    rep.get_by_label("Line 1 product").fill("LICENSE")
    rep.get_by_label("Line 1 quantity").fill("20")
    rep.get_by_label("Line 1 list price from the price book").get_by_text("1,200.00 USD").wait_for()
    assert rep.get_by_label("Line 1 unit list price (custom line)").is_hidden()
    rep.get_by_label("Line 1 unit price asked").fill("1,080.00")  # 10 % off
    preview = rep.locator("#route-preview")
    preview.get_by_text("Manager is the lowest level that covers it").wait_for()
    rep.get_by_role("button", name="Submit for approval").click()
    rep.get_by_test_id("status").get_by_text("Pending").wait_for()
    approval_url = rep.url
    assert rep.get_by_role("button", name="Approve").count() == 0  # never their own

    manager = person("manager")
    manager.get_by_role("link", name="Initech expansion").click()
    manager.get_by_role("button", name="Approve").click()
    manager.get_by_test_id("status").get_by_text("Approved").wait_for()

    rep.goto(approval_url)
    assert rep.get_by_test_id("status").inner_text() == "Approved"
    assert rep.get_by_test_id("amount").inner_text() == "21,600.00 USD"
    screenshot(rep, "approval-approved.png")


def test_a_forged_form_without_its_csrf_token_is_refused(person, served):
    page = person("owner")
    page.goto("/settings/api-keys")
    with page.expect_navigation():
        page.evaluate(
            """() => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = "/settings/api-keys/generate";
                const slot = document.createElement("input");
                slot.name = "slot"; slot.value = "full";
                form.appendChild(slot);
                document.body.appendChild(form);
                form.submit();
            }"""
        )
    assert "security token" in page.content()
    assert page.get_by_role("heading", name="Bad request").count() == 1
    assert api_status(served.base_url, served.key)[0] == 200  # nothing was generated


def test_graphiql_runs_a_query_with_the_key_from_local_files_only(browser, served):
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    elsewhere = []
    page.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(served.base_url) or request.url.startswith("data:")
            else elsewhere.append(request.url)
        ),
    )
    answers = []
    page.on(
        "response",
        lambda response: answers.append(response) if response.url.endswith("/v2/graphql") else None,
    )
    page.goto("/v2/graphql/ide")
    page.locator(".graphiql-container").wait_for()
    # The Headers tab holds the key: put it after "Bearer " in the default headers.
    headers = page.locator(".graphiql-editor-tool .CodeMirror").last
    headers.click()
    page.keyboard.press("Control+End")
    for _ in range(3):  # back over '"', the line break and '}': just after "Bearer "
        page.keyboard.press("ArrowLeft")
    page.keyboard.type(served.key)
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    page.get_by_text('"name": "Acme"').wait_for()
    screenshot(page, "graphiql.png")
    assert any(response.status == 200 for response in answers)
    assert elsewhere == [], elsewhere  # no CDN, no other host
    context.close()


def test_graphiql_without_a_key_says_where_it_goes_and_sends_nothing(browser, served):
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sent = []
    page.on(
        "request",
        lambda request: sent.append(request) if request.url.endswith("/v2/graphql") else None,
    )
    page.goto("/v2/graphql/ide")
    page.locator(".graphiql-container").wait_for()
    hint = page.locator("#key-hint")
    assert hint.inner_text() == (
        'Add your API key in the Headers tab: {"Authorization": "Bearer sk_test_…"}'
    )
    # The schema's fetch was answered by the page itself, with the hint.
    page.locator(".result-window").get_by_text("Add your API key in the Headers tab").wait_for()
    page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    page.wait_for_timeout(500)
    assert hint.is_visible()
    assert "invalid_api_key" not in page.content()
    assert sent == []
    screenshot(page, "graphiql-no-key.png")

    headers = page.locator(".graphiql-editor-tool .CodeMirror").last
    headers.click()
    page.keyboard.press("Control+End")
    for _ in range(3):  # back over '"', the line break and '}': just after "Bearer "
        page.keyboard.press("ArrowLeft")
    with page.expect_response(
        lambda response: (
            response.url.endswith("/v2/graphql")
            and "IntrospectionQuery" in (response.request.post_data or "")
        )
    ) as introspection:
        page.keyboard.type(served.key)
    assert introspection.value.status == 200
    assert len(sent) == 1  # once the key was typed, not once per character
    hint.wait_for(state="hidden")
    page.get_by_role("button", name="Show Documentation Explorer").click()
    page.locator(".graphiql-doc-explorer").get_by_text("Query", exact=True).first.wait_for()
    assert "invalid_api_key" not in page.content()
    context.close()
