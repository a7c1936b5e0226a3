"""Hardening found by an outside attack and a newcomer's walk-through (issue 12): every item
has a test here, unless it lives beside the feature it hardens (the note says where)."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import bearer

# --- errors that must be 4xx, never 500 ----------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_a_body_nested_thousands_deep_is_a_400(api, depth):
    body = '{"x":' + "[" * depth + "]" * depth + "}"
    response = api("POST", "/v2/approvals", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"


# --- the server's edge speaks the API's language -------------------------------------------------


def test_redirects_never_name_the_clients_host(client):
    response = client.get("/v2/docs", headers={"Host": "evil.example"})
    assert response.status_code in (301, 308)
    assert response.headers["Location"] == "/v2/docs/"


def test_swagger_ui_calls_no_other_host(client):
    page = client.get("/v2/docs/", headers={"Host": "evil.example"}).get_data(as_text=True)
    config = json.loads(re.search(r"var user_config = (\{.*?\});", page).group(1))
    assert config["validatorUrl"] is None
    assert config["oauth2RedirectUrl"] == "/v2/docs/oauth2-redirect.html"
    assert "evil.example" not in page


def test_the_document_lists_the_servers_own_refusals(client):
    document = client.get("/v2/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"414", "431", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert "413" in statuses, (method, path)


def test_graphql_bodies_and_documents_nested_deep_are_refused(client, world):
    headers = {**bearer(world.key), "Content-Type": "application/json"}
    deep_json = '{"query": "{ me { id } }", "variables": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"
    response = client.post("/v2/graphql", data=deep_json, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "parameter_invalid"
    deep_literal = (
        "{ approvals(first: 1, status: " + "[" * 1900 + "]" * 1900 + ") { edges { node { id } } } }"
    )
    response = client.post("/v2/graphql", json={"query": deep_literal}, headers=bearer(world.key))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["extensions"]["code"] in (
        "parameter_invalid",
        "query_too_complex",
    )


# --- the dashboard's amounts, and one limit for the API and the forms ---------------------------

BAD_AMOUNTS = ["sNaN", "NaN", "Infinity", "1e999999", "1e-999999999", "-5", "1,25", "12.345"]


def _signed_in(app, who: str):
    from .dashboard import sign_in

    client = app.test_client()
    assert sign_in(client, f"{who}@acme.example").status_code == 303
    return client


def _approvals(app) -> int:
    from sqlalchemy import func, select

    from discountflow.approvals.models import Approval
    from discountflow.extensions import db

    with app.app_context():
        return db.session.execute(select(func.count()).select_from(Approval)).scalar_one()


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
@pytest.mark.parametrize("field", ["unit_list_price", "unit_price"])
def test_a_request_with_an_amount_that_is_no_amount_is_a_form_error(app, world, field, amount):
    from .dashboard import post_form
    from .test_dashboard_approvals import _request_form

    rep = _signed_in(app, "rep")
    before = _approvals(app)
    response = post_form(rep, "/approvals/new", _request_form(**{f"line_items-0-{field}": amount}))
    assert response.status_code == 400
    assert "Enter an amount such as 1,250.00" in response.text or "at most 2 decimals" in (
        response.text
    )
    assert _approvals(app) == before
    preview = post_form(
        rep, "/approvals/preview", _request_form(**{f"line_items-0-{field}": amount})
    )
    assert (
        preview.status_code == 200
        and "Enter an amount" in preview.text
        or ("decimals" in preview.text)
    )


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_a_level_cap_that_is_no_amount_is_a_form_error(app, world, amount):
    from .dashboard import post_form

    admin = _signed_in(app, "admin")
    response = post_form(
        admin,
        "/settings/approval-levels",
        {"name": "Board", "rank": "9", "max_discount_percent": "80", "cap_amount": amount},
    )
    assert response.status_code == 400


@pytest.mark.parametrize("percent", ["sNaN", "1e3", "NaN", "-1", "12,5"])
def test_a_percentage_that_is_no_number_is_a_form_error(app, world, percent):
    from .dashboard import post_form

    admin = _signed_in(app, "admin")
    response = post_form(
        admin,
        "/settings/organization",
        {
            "name": "Acme",
            "auto_approve_threshold_percent": percent,
            "default_validity_days": "30",
            "reminder_interval_hours": "24",
            "custom_line_items": "allowed",
        },
    )
    assert response.status_code == 400
    assert "Enter a percentage such as 12.5" in response.text


def test_an_approval_of_100_lines_made_by_the_api_opens_in_the_dashboard(app, world, api):
    from .approvals_world import request_body

    longest = {
        "sku": "S" * 100,
        "name": "Longest SKU",
        "prices": [{"currency": "USD", "unit_list_price": 10_000}],
    }
    assert api("POST", "/v2/products", json=longest).status_code == 201
    body = request_body(*([10] * 100), deal_reference="D" * 100)
    body["line_items"][0]["sku"] = "S" * 100
    created = api("POST", "/v2/approvals", json=body)
    assert created.status_code == 201
    approval_id = created.get_json()["id"]
    owner = _signed_in(app, "owner")
    page = owner.get(f"/approvals/{approval_id}/edit")
    assert page.status_code == 200
    assert page.text.count('name="line_items-') >= 100 * 5
    assert 'maxlength="100"' in page.text  # the SKU and the deal reference: the API's limits


def test_the_form_and_the_api_allow_the_same_lengths():
    from discountflow.approvals import forms, schemas

    form = forms.ApprovalForm.__dict__
    assert forms.MAX_LINES == schemas.MAX_LINE_ITEMS
    limits = {
        "title": schemas.TITLE_LENGTH,
        "customer": schemas.CUSTOMER_LENGTH,
        "deal_reference": schemas.DEAL_REFERENCE_LENGTH,
        "justification": schemas.JUSTIFICATION_LENGTH,
    }
    for name, length in limits.items():
        field = form[name]
        assert any(getattr(v, "max", None) == length for v in field.kwargs["validators"]), name
    line = forms.LineItemForm.__dict__
    assert any(
        v.max == schemas.SKU_LENGTH for v in line["sku"].kwargs["validators"] if hasattr(v, "max")
    )


def test_edit_and_resubmit_in_the_dashboard_is_one_transaction(app, world):
    from discountflow.approvals import levels
    from discountflow.approvals.models import Approval
    from discountflow.extensions import db

    from .approvals_world import create
    from .dashboard import post_form
    from .test_dashboard_approvals import _request_form

    draft = create(world, "rep", 10)
    with app.app_context():
        for level_id in world.levels.values():  # nowhere to route: the submit is refused
            levels.delete_level(world.actor("admin"), level_id)
    rep = _signed_in(app, "rep")
    form = _request_form(title="Changed", **{"line_items-0-unit_price": "600"})  # 50 % off
    response = post_form(rep, f"/approvals/{draft}/edit", form, token_from=f"/approvals/{draft}")
    assert response.status_code == 400
    assert "no approval levels" in response.text
    with app.app_context():
        approval = db.session.get(Approval, draft)
        assert (approval.title, approval.status) == ("Deal", "draft")


# --- the failed-authentication limit: no oracle, counted before checking -----------------------


@pytest.fixture
def slow_bcrypt(monkeypatch, window_start):
    """bcrypt checks that take a while (so concurrent ones overlap), counted (within one window
    of every failed-attempt budget)."""
    import threading
    import time

    import bcrypt

    real, calls, lock = bcrypt.checkpw, [], threading.Lock()

    def slow(password, hashed):
        with lock:
            calls.append(password)
        time.sleep(0.05)
        return real(password, hashed)

    monkeypatch.setattr("discountflow.auth.services.bcrypt.checkpw", slow)
    return calls


def _wrong(key: str, number: int) -> str:
    from discountflow.auth.keys import checksum

    body = key[: -6 - 22] + f"{number:022d}"
    return body + checksum(body)


def test_during_a_lockout_every_unverified_key_gets_the_same_answer(app, client, world):
    from discountflow.auth.keys import build_key, checksum

    from .conftest import generate_key

    real = generate_key(app, world.people["owner"], read_only=True)  # valid, never used here
    for number in range(20):
        assert client.get("/v2/me", headers=bearer(_wrong(world.key, number))).status_code == 401
    _, unknown = build_key("staging", read_only=False)
    body = world.key[:-6]
    bad_checksum = body + ("A" * 6 if checksum(body) != "A" * 6 else "B" * 6)
    answers = []
    for authorization in (
        f"Bearer {_wrong(world.key, 99)}",  # a live key id, a wrong secret
        f"Bearer {unknown}",  # an id no key has
        f"Bearer {bad_checksum}",
        "Bearer sk_test_123456789",  # malformed
        "Basic abc",
        None,
        f"Bearer {real}",  # valid, but not verified by this process yet
    ):
        headers = {"Authorization": authorization} if authorization else {}
        response = client.get("/v2/me", headers=headers)
        answers.append((response.status_code, response.get_json()))
    assert len(set(map(repr, answers))) == 1, answers
    assert answers[0][0] == 429 and answers[0][1]["error"] == "rate_limit_exceeded"


def test_requests_that_cost_no_bcrypt_do_not_count(app, client, world, slow_bcrypt):
    from discountflow.auth.keys import build_key

    from .conftest import generate_key

    for number in range(60):
        _, unknown = build_key("staging", read_only=False)
        for authorization in (f"Bearer {unknown}", "Bearer sk_test_nope", f"Basic {number}"):
            assert client.get("/v2/me", headers={"Authorization": authorization}).status_code == 401
    assert slow_bcrypt == []
    fresh = generate_key(app, world.people["owner"], read_only=True)
    assert client.get("/v2/me", headers=bearer(fresh)).status_code == 200


def _concurrently(count: int, call) -> list:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def test_concurrent_wrong_secrets_never_exceed_the_budget(app, world, slow_bcrypt):
    def attempt(number: int) -> int:
        client = app.test_client()
        return client.get("/v2/me", headers=bearer(_wrong(world.key, number))).status_code

    statuses = _concurrently(40, attempt)
    assert len(slow_bcrypt) == 20  # AUTH_FAILURE_LIMIT: exactly, though 40 came at once
    assert sorted(statuses) == [401] * 20 + [429] * 20


def test_concurrent_wrong_passwords_never_exceed_the_sign_in_budget(app, world, slow_bcrypt):
    from .dashboard import csrf_token

    def attempt(number: int) -> int:
        client = app.test_client()
        token = csrf_token(client)
        response = client.post(
            "/sign-in",
            data={"email": "rep@acme.example", "password": f"wrong {number}", "csrf_token": token},
            environ_base={"REMOTE_ADDR": f"10.0.0.{number}"},  # the account's limit: 5
        )
        return response.status_code

    statuses = _concurrently(8, attempt)
    assert len(slow_bcrypt) == 5
    assert sorted(statuses) == [401] * 5 + [429] * 3


# --- sessions that end ------------------------------------------------------------------------


def _copy_of_cookie(client):
    return client.get_cookie("discountflow_session").value


def _with_cookie(app, value):
    copy = app.test_client()
    copy.set_cookie("discountflow_session", value)
    return copy


def test_a_copied_cookie_opens_nothing_after_sign_out(app, world):
    from .dashboard import post_form

    owner = _signed_in(app, "owner")
    stolen = _copy_of_cookie(owner)
    assert _with_cookie(app, stolen).get("/settings/api-keys").status_code == 200
    assert post_form(owner, "/sign-out").status_code == 303
    replay = _with_cookie(app, stolen).get("/settings/api-keys")
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/sign-in")


def test_sign_out_everywhere_ends_every_session_of_that_member(app, world):
    from .dashboard import post_form

    laptop, phone = _signed_in(app, "owner"), _signed_in(app, "owner")
    other = _signed_in(app, "admin")
    assert phone.get("/inbox").status_code == 200
    assert post_form(laptop, "/sign-out-everywhere").status_code == 303
    assert phone.get("/inbox").status_code == 302
    assert laptop.get("/inbox").status_code == 302
    assert other.get("/inbox").status_code == 200  # nobody else's


def test_a_role_change_ends_that_members_sessions(app, world, api):
    rep = _signed_in(app, "rep")
    assert rep.get("/inbox").status_code == 200
    changed = api("PATCH", f"/v2/members/{world.people['rep']}", json={"role": "admin"})
    assert changed.status_code == 200
    assert rep.get("/inbox").status_code == 302
    assert _signed_in(app, "rep").get("/settings/members").status_code == 200  # as an admin now


# --- no cross-organization leak ----------------------------------------------------------------


def test_an_email_used_in_another_organization_can_be_added_and_nothing_is_learned(app, world):
    from .approvals_world import build_world
    from .dashboard import post_form

    build_world(app, "globex")  # has rep@globex.example, and now also …
    admin = _signed_in_to(app, "acme", "admin@acme.example")
    added = post_form(
        admin,
        "/settings/members",
        {"email": "rep@globex.example", "role": "member", "password": "another password"},
        token_from="/settings/members",
    )
    assert added.status_code == 303  # as for an email nobody uses
    again = post_form(
        admin,
        "/settings/members",
        {"email": "rep@globex.example", "role": "member", "password": "another password"},
        token_from="/settings/members",
    )
    assert again.status_code == 400
    assert "A member of this organization has this email." in again.text
    # Each account signs in to its own organization, with its own password.
    assert _sign_in_status(app, "acme", "rep@globex.example", "another password") == 303
    from .conftest import PASSWORD

    assert _sign_in_status(app, "globex", "rep@globex.example", PASSWORD) == 303
    assert _sign_in_status(app, "globex", "rep@globex.example", "another password") == 401


def _sign_in_status(app, organization: str, email: str, password: str) -> int:
    from .dashboard import csrf_token

    client = app.test_client()
    data = {
        "organization": organization,
        "email": email,
        "password": password,
        "csrf_token": csrf_token(client),
    }
    return client.post("/sign-in", data=data).status_code


def _signed_in_to(app, organization: str, email: str):
    from .conftest import PASSWORD
    from .dashboard import csrf_token

    client = app.test_client()
    data = {"organization": organization, "email": email, "password": PASSWORD}
    response = client.post("/sign-in", data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 303
    return client


def test_the_sign_in_page_asks_for_the_organization_only_when_there_are_several(app, world):
    from .approvals_world import build_world

    assert 'name="organization"' not in app.test_client().get("/sign-in").text
    build_world(app, "globex")
    assert 'name="organization"' in app.test_client().get("/sign-in").text
    # Without it, nobody signs in: the answer is the same as for a wrong password.
    from .conftest import PASSWORD
    from .dashboard import sign_in

    assert sign_in(app.test_client(), "rep@acme.example", PASSWORD).status_code == 401
    assert _sign_in_status(app, "acme", "rep@acme.example", PASSWORD) == 303


# --- the front door: the CLI answers in one line -----------------------------------------------


@pytest.mark.sqlite_only  # backup copies an SQLite file (PostgreSQL: pg_dump)
def test_backup_to_a_folder_that_does_not_exist_says_so(runner):
    result = runner.invoke(args=["backup", "/no/such/dir/x.sqlite"])
    assert result.exit_code != 0
    assert "There is no folder /no/such/dir: create it first." in result.output
    assert "Traceback" not in result.output


@pytest.mark.sqlite_only
def test_a_database_without_its_schema_says_to_upgrade(tmp_path):
    from discountflow import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x" * 40,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.sqlite'}",
            "BCRYPT_ROUNDS": 4,
        }
    )
    runner = app.test_cli_runner()
    for args in (
        ["create-org", "Acme", "--owner-email", "o@acme.example", "--password-stdin"],
        ["keys", "list", "--org", "acme"],
    ):
        result = runner.invoke(args=args, input="a long enough password\n")
        assert result.exit_code != 0, args
        assert "run `flask --app app db upgrade` first" in result.output, result.output
        assert "Traceback" not in result.output


def test_a_password_prompt_without_a_terminal_says_what_to_do(runner, org):
    result = runner.invoke(args=["add-member", "--org", "acme", "--email", "n@acme.example"])
    assert result.exit_code == 1  # nothing on standard input, and no terminal to ask at
    assert result.output.startswith("Error: No password on standard input: pipe it in")
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output
    piped = runner.invoke(
        args=["add-member", "--org", "acme", "--email", "m@acme.example"],
        input="a long enough password\n",
    )
    assert piped.exit_code == 0, piped.output
    piped = runner.invoke(
        args=["add-member", "--org", "acme", "--email", "n@acme.example", "--password-stdin"],
        input="a long enough password\n",
    )
    assert piped.exit_code == 0, piped.output


# --- smaller defects ---------------------------------------------------------------------------


def test_urls_that_do_not_exist_are_not_counted_against_the_key(client, world):
    first = client.get("/v2/me", headers=bearer(world.key)).headers["X-RateLimit-Remaining"]
    for _ in range(3):
        response = client.get("/v2/nope", headers=bearer(world.key))
        assert response.status_code == 404
        wrong_method = client.put("/v2/me", headers=bearer(world.key), json={})
        assert wrong_method.status_code == 405
    after = client.get("/v2/me", headers=bearer(world.key)).headers["X-RateLimit-Remaining"]
    assert int(after) == int(first) - 1
    # still authenticated: a URL that does not exist tells nothing without a key
    assert client.get("/v2/nope").status_code == 401


def test_an_unreachable_redis_is_reported_once_in_a_while(tmp_path, caplog, monkeypatch):
    """Keys are read from the database (nothing remembered is trusted) and the log says so
    once, not on every request."""
    from .conftest import create_org, generate_key, make_app

    monkeypatch.setattr("discountflow.ratelimit._last_warning", float("-inf"))  # none yet

    app = make_app(tmp_path, RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0")
    _, owner = create_org(app)
    key = generate_key(app, owner)
    client = app.test_client()
    with caplog.at_level("WARNING"):
        for _ in range(20):
            assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    warnings = [r for r in caplog.records if "storage unreachable" in r.getMessage()]
    assert len(warnings) == 1


# --- the seeds' own words in the dashboard -----------------------------------------------------


def test_the_api_keys_tab_uses_the_seeds_words(app, world):
    import re as regex

    from .dashboard import nav_links, post_form

    owner = _signed_in(app, "owner")
    assert "Settings" in nav_links(owner.get("/inbox"))
    tab = owner.get("/settings/api-keys")
    assert "API Keys" in nav_links(owner.get("/settings", follow_redirects=True), "Settings")
    full, read_only = tab.text.split('class="card key-slot"')[1:3]
    assert "Generate New Key" in full and "Generate API Key" not in full  # a key exists
    assert "immediately invalidates the current key" in full
    assert "Revoke API Key" in full
    nonce = regex.search(r'name="nonce" value="([^"]+)"', tab.text).group(1)
    post_form(owner, "/settings/api-keys/revoke", {"slot": "full"}, token_from="/settings/api-keys")
    emptied = owner.get("/settings/api-keys").text.split('class="card key-slot"')[1]
    assert "Generate API Key" in emptied and "Generate New Key" not in emptied
    assert "No API key generated" in emptied and "Revoke API Key" not in emptied
    confirm = owner.get("/settings/api-keys/revoke?slot=read_only")
    assert "There is no undo" in confirm.text and "Revoke API Key" in confirm.text
    assert nonce and read_only
