"""The dashboard's sign-in, sessions, CSRF and the owner's Settings → API Keys tab."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from discountflow.auth.models import ApiKey
from discountflow.extensions import db

from .conftest import PASSWORD, bearer, make_app
from .dashboard import csrf_token, nav_links, post_form, sign_in

SIGN_IN_FAILED = "The email or password is incorrect."


def _keys_in_database(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(ApiKey)).scalar_one()


# --- signing in --------------------------------------------------------------------------------


def test_the_sign_in_page_says_what_to_do_about_a_forgotten_password(client, org):
    page = client.get("/sign-in")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page.text))
    assert (
        "Forgot your password? Ask your organization's owner, or run flask --app app "
        "users reset-password EMAIL --org ORG on the server."
    ) in text


def test_sign_in_sets_a_hardened_session_and_lands_in_the_inbox(client, world):
    response = sign_in(client, "manager@acme.example")
    assert response.status_code == 303
    assert response.headers["Location"] == "/inbox"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("discountflow_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # staging over plain HTTP on a laptop
    assert "Expires=" in cookie  # a lifetime, not 31 days of Flask's default
    inbox = client.get("/inbox")
    assert inbox.status_code == 200
    assert "Awaiting my decision" in inbox.text
    assert inbox.headers["Cache-Control"] == "no-store"


def test_the_session_cookie_is_secure_in_production(tmp_path):
    app = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    from .conftest import create_org

    create_org(app)
    client = app.test_client()
    response = sign_in(client, "owner@acme.example")
    assert response.status_code == 303
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("manager@acme.example", "wrong password!"),
        ("nobody@acme.example", PASSWORD),
        ("MANAGER@acme.example ", "x" * 100),  # too long to be a password
        ("", ""),
    ],
)
def test_every_failed_sign_in_gets_one_generic_message(client, world, email, password):
    response = sign_in(client, email, password)
    assert response.status_code in (400, 401)
    if email:
        assert response.status_code == 401
        assert SIGN_IN_FAILED in response.text
    assert client.get("/inbox").status_code == 302


def test_emails_are_matched_without_case_or_spaces(client, world):
    assert sign_in(client, "  Manager@ACME.example ").status_code == 303


def test_signing_in_starts_a_fresh_session(client, world, app):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker before sign-in"
    assert sign_in(client, "rep@acme.example").status_code == 303
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == world.people["rep"]


@pytest.mark.parametrize(
    ("next_url", "lands"),
    [
        ("/approvals?status=pending", "/approvals?status=pending"),
        ("https://evil.example/", "/inbox"),
        ("//evil.example/path", "/inbox"),
        ("/\\evil.example", "/inbox"),
        ("javascript:alert(1)", "/inbox"),
    ],
)
def test_next_is_followed_only_within_the_site(client, world, next_url, lands):
    response = sign_in(client, "rep@acme.example", next=next_url)
    assert response.headers["Location"] == lands


def test_a_page_sends_people_to_sign_in_with_next(client, world):
    response = client.get("/approvals?status=draft")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=")


def test_sign_out_ends_the_session(client, world):
    sign_in(client, "rep@acme.example")
    response = post_form(client, "/sign-out")
    assert response.status_code == 303
    assert client.get("/inbox").status_code == 302


def test_an_api_key_never_signs_anyone_in(client, world):
    for path in ("/inbox", "/approvals", "/settings/api-keys"):
        response = client.get(path, headers=bearer(world.key))
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/sign-in")
    api = client.get("/v2/me", headers=bearer(world.key))
    assert api.status_code == 200
    assert "Set-Cookie" not in api.headers  # the API keeps no session


def test_failed_sign_ins_are_limited_per_account(client, world, window_start):
    for _ in range(5):
        assert sign_in(client, "rep@acme.example", "wrong password!").status_code == 401
    refused = sign_in(client, "rep@acme.example")  # even the right password, for a while
    assert refused.status_code == 429
    assert "Too many attempts" in refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert sign_in(client, "manager@acme.example").status_code == 303  # other accounts: fine


def test_failed_sign_ins_are_limited_per_address(client, world, window_start):
    for n in range(10):
        assert sign_in(client, f"nobody{n}@acme.example", "wrong password!").status_code == 401
    assert sign_in(client, "rep@acme.example").status_code == 429
    other = client.application.test_client()
    other_address = {"REMOTE_ADDR": "10.0.0.9"}
    token_page = other.get("/sign-in", environ_base=other_address)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', token_page.text)
    response = other.post(
        "/sign-in",
        data={"email": "rep@acme.example", "password": PASSWORD, "csrf_token": token.group(1)},
        environ_base=other_address,
    )
    assert response.status_code == 303


def test_successful_sign_ins_are_not_counted(client, world):
    for _ in range(12):
        assert sign_in(client, "rep@acme.example").status_code == 303


def test_forms_without_their_csrf_token_are_refused(client, world):
    response = client.post("/sign-in", data={"email": "rep@acme.example", "password": PASSWORD})
    assert response.status_code == 400
    assert "security token" in response.text
    sign_in(client, "owner@acme.example")
    before = _keys_in_database(client.application)
    forged = client.post("/settings/api-keys/generate", data={"slot": "full"})
    assert forged.status_code == 400
    wrong = client.post(
        "/settings/api-keys/generate", data={"slot": "full", "csrf_token": "forged"}
    )
    assert wrong.status_code == 400
    assert _keys_in_database(client.application) == before


def test_the_api_needs_no_csrf_token(api):
    assert (
        api(
            "POST", "/v2/approval_levels", json={"name": "X", "rank": 9, "max_discount_percent": 60}
        ).status_code
        == 201
    )


# --- Settings → API Keys -----------------------------------------------------------------------


def test_only_the_owner_sees_the_api_keys_tab(client, world):
    sign_in(client, "owner@acme.example")
    assert "Settings" in nav_links(client.get("/inbox"))
    owner_tabs = nav_links(client.get("/settings", follow_redirects=True), "Settings")
    assert owner_tabs == [
        "General",
        "Members",
        "Approval levels",
        "Products",
        "Webhooks",
        "Notifications",
        "Audit",
        "API Keys",
    ]
    for who in ("admin", "manager", "rep"):
        other = client.application.test_client()
        sign_in(other, f"{who}@acme.example")
        settings = other.get("/settings", follow_redirects=True)
        assert "API Keys" not in nav_links(settings, "Settings"), who
        assert "API Keys" not in nav_links(other.get("/inbox")), who
        assert other.get("/settings/api-keys").status_code == 404, who
        assert other.get("/settings/api-keys/revoke?slot=full").status_code == 404, who
        token = csrf_token(other, "/inbox")
        for action in ("generate", "roll", "revoke"):
            response = other.post(
                f"/settings/api-keys/{action}", data={"slot": "full", "csrf_token": token}
            )
            assert response.status_code == 404, (who, action)


def _generate(client, slot="full"):
    page = client.get("/settings/api-keys")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    token = csrf_token(client, "/inbox")
    data = {"slot": slot, "nonce": nonce, "csrf_token": token}
    return client.post("/settings/api-keys/generate", data=data), data


def test_the_tab_shows_each_slots_status_and_last_use(client):
    from .conftest import create_org

    create_org(client.application)
    sign_in(client, "owner@acme.example")
    page = client.get("/settings/api-keys")
    assert page.status_code == 200
    assert page.text.count("No API key generated") == 2
    assert 'data-testid="last-used-full">Never<' in page.text
    response, _ = _generate(client)
    key = re.search(r'value="(sk_test_[^"]+)"', response.text).group(1)
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    page = client.get("/settings/api-keys")
    assert 'data-testid="status-full">Active<' in page.text
    assert 'data-testid="status-read_only">No API key generated<' in page.text
    assert f"…{key[-4:]}" in page.text
    last_used = re.search(r'data-testid="last-used-full">(.*?)</dd>', page.text).group(1)
    assert "Never" not in last_used and "<time" in last_used and "UTC" in last_used
    assert key not in page.text


def test_a_new_key_is_shown_once_and_never_again(client, world):
    sign_in(client, "owner@acme.example")
    response, data = _generate(client)
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    assert "It will not be shown again" in response.text
    key = re.search(r'value="(sk_test_[^"]+)"', response.text).group(1)
    assert key not in response.request.url
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    assert client.get("/v2/me", headers=bearer(world.key)).status_code == 401  # the old one
    # Reloading the result (the same POST again) issues and shows nothing.
    count = _keys_in_database(client.application)
    replay = client.post("/settings/api-keys/generate", data=data)
    assert replay.status_code == 303
    assert _keys_in_database(client.application) == count
    again = client.get(replay.headers["Location"])
    assert "shown only once" in again.text
    assert key not in again.text
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200


def test_generate_warns_that_the_current_key_stops_working(client, world):
    sign_in(client, "owner@acme.example")
    assert "immediately invalidates the current key" in client.get("/settings/api-keys").text


def test_roll_keeps_the_old_key_for_the_grace_period(client, world):
    sign_in(client, "owner@acme.example")
    page = client.get("/settings/api-keys")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text).group(1)
    response = post_form(
        client, "/settings/api-keys/roll", {"slot": "full", "nonce": nonce, "grace_hours": "24"}
    )
    assert response.status_code == 200
    new_key = re.search(r'value="(sk_test_[^"]+)"', response.text).group(1)
    assert "keeps working for 24 hours" in response.text
    assert client.get("/v2/me", headers=bearer(new_key)).status_code == 200
    assert client.get("/v2/me", headers=bearer(world.key)).status_code == 200
    assert "keeps working until" in client.get("/settings/api-keys").text


def test_revoke_asks_first_then_ends_the_key_at_once(client, world):
    sign_in(client, "owner@acme.example")
    confirm = client.get("/settings/api-keys/revoke?slot=full")
    assert confirm.status_code == 200
    assert "There is no undo" in confirm.text
    assert client.get("/v2/me", headers=bearer(world.key)).status_code == 200  # not yet
    response = post_form(client, "/settings/api-keys/revoke", {"slot": "full"})
    assert response.status_code == 303
    refused = client.get("/v2/me", headers=bearer(world.key))
    assert refused.status_code == 401
    assert refused.get_json() == {
        "error": "invalid_api_key",
        "message": "The provided API key is invalid or expired.",
    }
    page = client.get("/settings/api-keys")
    assert 'data-testid="status-full">No API key generated<' in page.text
    assert 'data-testid="status-read_only">Active<' in page.text  # the other slot is untouched
