"""Every documented authentication behaviour of /v2, as a client sees it."""

from __future__ import annotations

import bcrypt
import pytest
from sqlalchemy import event

from discountflow.auth import services as auth
from discountflow.auth.keys import build_key, checksum, parse_key
from discountflow.auth.models import ApiKey
from discountflow.extensions import db

from .conftest import add_member, bearer, create_org, generate_key, make_app, owner_actor

INVALID = {"error": "invalid_api_key", "message": "The provided API key is invalid or expired."}


def assert_invalid_key(response):
    assert response.status_code == 401
    assert response.get_json() == INVALID
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Content-Type"] == "application/json"


def test_valid_key_authenticates(client, key, org):
    response = client.get("/v2/me", headers=bearer(key))
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "object": "api_key_session",
        "organization": {
            "object": "organization",
            "id": org[0],
            "name": "Acme",
            "slug": "acme",
        },
        "key_id": body["key_id"],
        "environment": "staging",
        "read_only": False,
        "rate_limit": {"limit": 500, "window_seconds": 60},
    }
    assert key.startswith("sk_test_" + body["key_id"].removeprefix("key_"))


def test_documented_example_request(client, key):
    response = client.get(
        "/v2/approvals", headers={**bearer(key), "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.get_json() == {"object": "list", "data": [], "has_more": False}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing header"),
        pytest.param({"Authorization": ""}, id="empty header"),
        pytest.param({"Authorization": "Bearer"}, id="scheme without token"),
        pytest.param({"Authorization": "Bearer "}, id="scheme with blank token"),
        pytest.param({"Authorization": "sk_test_x"}, id="no scheme"),
    ],
)
def test_missing_credentials(client, key, headers):
    assert_invalid_key(client.get("/v2/approvals", headers=headers))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest", "ApiKey"])
def test_another_scheme(client, key, scheme):
    assert_invalid_key(client.get("/v2/approvals", headers={"Authorization": f"{scheme} {key}"}))


def test_scheme_is_case_insensitive(client, key):
    assert client.get("/v2/me", headers={"Authorization": f"bearer {key}"}).status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda k: k[:-1], id="truncated"),
        pytest.param(lambda k: k + "a", id="extended"),
        pytest.param(lambda k: k.replace("sk_test_", "pk_test_"), id="unknown type"),
        pytest.param(lambda k: k.replace("sk_test_", "sk_prod_"), id="unknown environment"),
        pytest.param(lambda k: k.replace("_", "-"), id="separators"),
        pytest.param(lambda k: "sk_test_123456789", id="documentation placeholder"),
        pytest.param(lambda k: k.upper(), id="upper case"),
        pytest.param(lambda k: " " + k[1:], id="space inside"),
        pytest.param(lambda k: k[:20] + "é" + k[21:], id="non-ascii"),
    ],
)
def test_incorrect_format(client, key, mangle):
    assert_invalid_key(client.get("/v2/approvals", headers=bearer(mangle(key))))


def test_bad_checksum(client, key):
    body, check = key[:-6], key[-6:]
    wrong = body + ("000000" if check != "000000" else "000001")
    assert_invalid_key(client.get("/v2/approvals", headers=bearer(wrong)))


def test_unknown_key_with_valid_format(client, key):
    _, unknown = build_key("staging", read_only=False)
    assert_invalid_key(client.get("/v2/approvals", headers=bearer(unknown)))


def test_wrong_secret_for_known_lookup_id(client, key):
    # Same public lookup id, different secret, a correct checksum: only bcrypt can tell.
    body = key[: -6 - 22] + "A" * 22
    forged = body + checksum(body)
    assert parse_key(forged) is not None
    assert_invalid_key(client.get("/v2/approvals", headers=bearer(forged)))


def test_key_in_query_string_is_never_accepted(client, key):
    for name in ("api_key", "key", "access_token", "token", "Authorization"):
        assert_invalid_key(client.get(f"/v2/approvals?{name}={key}"))


def test_key_in_form_or_cookie_is_never_accepted(client, key):
    client.set_cookie("api_key", key)
    assert_invalid_key(client.get("/v2/approvals"))
    assert_invalid_key(client.post("/v2/approvals", data={"api_key": key}))


def test_revoked_key(app, client, key, org):
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    with app.app_context():
        auth.revoke_key(owner_actor(org[0]))
    assert_invalid_key(client.get("/v2/me", headers=bearer(key)))


def test_expired_key(app, client, org, clock):
    key = generate_key(app, org[1], expires_in_days=1)
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    clock.advance(days=1, seconds=-1)
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    clock.advance(seconds=1)
    assert_invalid_key(client.get("/v2/me", headers=bearer(key)))


def test_production_key_on_staging_and_the_reverse(tmp_path):
    # One database, two deployments: a staging one and a production one.
    staging = make_app(tmp_path)
    production = make_app(tmp_path, DISCOUNTFLOW_ENV="production")
    _, owner_id = create_org(staging)
    test_key = generate_key(staging, owner_id)
    live_key = generate_key(production, owner_id)
    assert test_key.startswith("sk_test_") and live_key.startswith("sk_live_")

    assert staging.test_client().get("/v2/me", headers=bearer(test_key)).status_code == 200
    assert production.test_client().get("/v2/me", headers=bearer(live_key)).status_code == 200
    assert_invalid_key(staging.test_client().get("/v2/me", headers=bearer(live_key)))
    assert_invalid_key(production.test_client().get("/v2/me", headers=bearer(test_key)))


def test_unknown_v2_route_needs_a_key_then_answers_404(client, key):
    assert_invalid_key(client.get("/v2/nothing-here"))
    response = client.get("/v2/nothing-here", headers=bearer(key))
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "resource_missing",
        "message": "Unrecognized request URL (GET /v2/nothing-here).",
    }


def test_method_not_allowed_in_json_shape(client, key):
    response = client.delete("/v2/me", headers=bearer(key))
    assert response.status_code == 405
    assert response.get_json() == {
        "error": "method_not_allowed",
        "message": "DELETE is not allowed on /v2/me.",
    }
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_server_error_in_json_shape_without_traceback(tmp_path):
    app = make_app(tmp_path, PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/v2/boom", "boom", boom)
    _, owner_id = create_org(app)
    key = generate_key(app, owner_id)
    response = app.test_client().get("/v2/boom", headers=bearer(key))
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "api_error",
        "message": "An unexpected error occurred on our side.",
    }
    assert b"secret internals" not in response.data


# --- read-only keys ----------------------------------------------------------------------------


@pytest.fixture
def read_only_key(app, org):
    return generate_key(app, org[1], read_only=True)


def test_read_only_key_reads(client, read_only_key):
    assert read_only_key.startswith("rk_test_")
    response = client.get("/v2/me", headers=bearer(read_only_key))
    assert response.status_code == 200
    assert response.get_json()["read_only"] is True
    assert client.get("/v2/approvals", headers=bearer(read_only_key)).status_code == 200
    assert client.head("/v2/approvals", headers=bearer(read_only_key)).status_code == 200
    assert client.options("/v2/approvals", headers=bearer(read_only_key)).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/v2/approvals", "/v2/me", "/v2/approvals/apr_x"])
def test_read_only_key_cannot_write(client, read_only_key, method, path):
    response = client.open(path, method=method, headers=bearer(read_only_key), json={})
    assert response.status_code == 403
    body = response.get_json()
    assert body["error"] == "read_only_key"
    assert body["message"]
    assert set(body) == {"error", "message"}


def test_full_access_key_is_not_refused_as_read_only(client, key):
    response = client.post("/v2/me", headers=bearer(key))
    assert response.status_code == 405


# --- organization isolation --------------------------------------------------------------------


def test_each_key_sees_only_its_organization(app, client):
    from discountflow.approvals.models import Approval

    acme_id, acme_owner = create_org(app, "acme")
    globex_id, globex_owner = create_org(app, "globex")
    with app.app_context():
        db.session.add_all(
            [
                Approval(
                    organization_id=acme_id,
                    requested_by_id=acme_owner,
                    title="Acme deal",
                    currency="USD",
                ),
                Approval(
                    organization_id=globex_id,
                    requested_by_id=globex_owner,
                    title="Globex deal",
                    currency="EUR",
                ),
            ]
        )
        db.session.commit()
    acme_key = generate_key(app, acme_owner)
    globex_key = generate_key(app, globex_owner)

    acme = client.get("/v2/approvals", headers=bearer(acme_key)).get_json()
    globex = client.get("/v2/approvals", headers=bearer(globex_key)).get_json()
    assert [a["title"] for a in acme["data"]] == ["Acme deal"]
    assert [a["title"] for a in globex["data"]] == ["Globex deal"]
    assert client.get("/v2/me", headers=bearer(globex_key)).get_json()["organization"]["id"] == (
        globex_id
    )


# --- the key format ----------------------------------------------------------------------------


def test_key_format_and_72_byte_bound():
    for environment, tag in (("staging", "test"), ("production", "live")):
        for read_only, kind in ((False, "sk"), (True, "rk")):
            key_id, key = build_key(environment, read_only)
            assert key.startswith(f"{kind}_{tag}_")
            assert len(key.encode()) <= 72
            assert parse_key(key).key_id == key_id
            assert parse_key(key).read_only is read_only
            assert parse_key(key).environment == environment


def test_checksum_catches_every_single_character_typo_and_transposition(key):
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
    for position, original in enumerate(key):
        for replacement in alphabet:
            if replacement != original:
                typo = key[:position] + replacement + key[position + 1 :]
                assert parse_key(typo) is None, typo
    for position in range(len(key) - 1):
        swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
        if swapped != key:
            assert parse_key(swapped) is None, swapped


def test_typo_is_rejected_before_any_database_work(app, client, key):
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        typo = key[:15] + ("x" if key[15] != "x" else "y") + key[16:]
        assert_invalid_key(client.get("/v2/approvals", headers=bearer(typo)))
        assert statements == []
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def test_oversized_token_is_refused_without_error(client, key):
    assert_invalid_key(client.get("/v2/me", headers=bearer(key + "x" * 100)))
    assert_invalid_key(client.get("/v2/me", headers=bearer("x" * 10_000)))


# --- verification cost -------------------------------------------------------------------------


@pytest.fixture
def bcrypt_checks(monkeypatch, window_start):
    """bcrypt checks, counted (within one window of every failed-attempt budget)."""
    calls = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr("discountflow.auth.services.bcrypt.checkpw", counting)
    return calls


def test_valid_key_costs_one_bcrypt_check_per_process(client, key, bcrypt_checks):
    for _ in range(20):
        assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    assert len(bcrypt_checks) == 1


def test_same_bad_key_never_runs_bcrypt_twice(client, key, bcrypt_checks):
    body = key[: -6 - 22] + "B" * 22
    forged = body + checksum(body)
    for _ in range(5):
        assert_invalid_key(client.get("/v2/me", headers=bearer(forged)))
    assert len(bcrypt_checks) == 1


def test_malformed_unknown_and_revoked_keys_never_run_bcrypt(app, client, key, org, bcrypt_checks):
    _, unknown = build_key("staging", read_only=False)
    assert_invalid_key(client.get("/v2/me", headers=bearer(unknown)))
    assert_invalid_key(client.get("/v2/me", headers=bearer("sk_test_nope")))
    with app.app_context():
        auth.revoke_key(owner_actor(org[0]))
    assert_invalid_key(client.get("/v2/me", headers=bearer(key)))
    assert bcrypt_checks == []


def test_failed_authentications_are_limited_per_ip_before_bcrypt(app, client, org, bcrypt_checks):
    key = generate_key(app, org[1])
    body = key[: -6 - 22]
    for attempt in range(20):  # AUTH_FAILURE_LIMIT: 20 per minute
        secret = f"{attempt:022d}"
        assert_invalid_key(
            client.get("/v2/me", headers=bearer(body + secret + checksum(body + secret)))
        )
    assert len(bcrypt_checks) == 20

    # The 21st distinct bad key from this address gets no bcrypt work at all.
    secret = "Z" * 22
    response = client.get("/v2/me", headers=bearer(body + secret + checksum(body + secret)))
    assert response.status_code == 429
    assert response.get_json()["error"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Nor does a valid key this process has not verified yet, from this address…
    assert client.get("/v2/me", headers=bearer(key)).status_code == 429
    assert len(bcrypt_checks) == 20
    # …while another address is unaffected.
    other = {"REMOTE_ADDR": "198.51.100.7"}
    assert client.get("/v2/me", headers=bearer(key), environ_base=other).status_code == 200


def test_with_redis_away_failed_checks_are_counted_in_the_process(tmp_path, bcrypt_checks):
    """Found by the fault run: with the rate-limit storage away, 30 wrong secrets at once all
    got 401, each after a bcrypt check. The per-key quota fails open; this budget is counted in
    the process meanwhile (as with ``process://``), so the checks keep their ceiling."""
    from concurrent.futures import ThreadPoolExecutor

    app = make_app(tmp_path, RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0")  # nothing answers
    _, owner = create_org(app)
    key = generate_key(app, owner)
    body = key[: -6 - 22]

    def attempt(number: int):
        secret = f"{number:022d}"
        forged = body + secret + checksum(body + secret)
        return app.test_client().get("/v2/me", headers=bearer(forged))

    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(attempt, range(30)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 20 + [429] * 10  # AUTH_FAILURE_LIMIT: 20 per minute
    assert len(bcrypt_checks) == 20
    for refused in answers:
        if refused.status_code == 429:
            assert refused.get_json() == {
                "error": "rate_limit_exceeded",
                "message": "Too many failed authentication attempts from this address. "
                "Retry later.",
            }
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        else:
            assert_invalid_key(refused)

    client = app.test_client()
    assert client.get("/v2/me", headers=bearer(key)).status_code == 429  # not verified here yet
    assert len(bcrypt_checks) == 20
    other = {"REMOTE_ADDR": "198.51.100.7"}
    assert client.get("/v2/me", headers=bearer(key), environ_base=other).status_code == 200
    assert len(bcrypt_checks) == 21


def test_a_short_window_spreads_failed_checks_out(app, client, org, bcrypt_checks, monkeypatch):
    """A budget of several windows, 20 a minute and at most 2 in 5 seconds: a flood of wrong
    secrets from one address costs a bcrypt check now and then, never a burst of them."""
    app.config["AUTH_FAILURE_LIMIT"] = "20 per minute; 2 per 5 seconds"
    now = [1_800_000_000.0]  # the start of a minute, and of a 5-second window
    monkeypatch.setattr("discountflow.ratelimit.time.time", lambda: now[0])
    key = generate_key(app, org[1])
    body = key[: -6 - 22]

    def attempt(number: int) -> int:
        secret = f"{number:022d}"
        return client.get("/v2/me", headers=bearer(body + secret + checksum(body + secret)))

    answers = []
    for number in range(60):  # one a second for a minute
        answers.append(attempt(number))
        now[0] += 1
    statuses = [answer.status_code for answer in answers]
    assert statuses[:7] == [401, 401, 429, 429, 429, 401, 401]  # 2 in each 5 seconds…
    assert statuses.count(401) == len(bcrypt_checks) == 20  # …and 20 in the minute
    assert statuses[-10:] == [429] * 10
    assert answers[2].headers["Retry-After"] == "3"  # when its 5-second window ends


def test_verified_key_keeps_working_from_an_address_over_its_failure_limit(app, client, org):
    key = generate_key(app, org[1])
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200
    for _ in range(25):
        client.get("/v2/me", headers=bearer("sk_test_nope"))
    assert client.get("/v2/me", headers=bearer(key)).status_code == 200


# --- last used ---------------------------------------------------------------------------------


def last_used(app, key_text):
    with app.app_context():
        return db.session.get(ApiKey, parse_key(key_text).key_id).last_used_at


def test_last_used_is_recorded_and_throttled(app, client, key, clock):
    assert last_used(app, key) is None
    client.get("/v2/me", headers=bearer(key))
    first = last_used(app, key)
    assert first is not None

    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        clock.advance(seconds=30)
        for _ in range(10):
            client.get("/v2/me", headers=bearer(key))
        assert last_used(app, key) == first
        assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    finally:
        event.remove(engine, "before_cursor_execute", listener)

    clock.advance(seconds=31)
    client.get("/v2/me", headers=bearer(key))
    assert last_used(app, key) > first


def test_failed_requests_do_not_count_as_use(app, client, key, org):
    add_member(app, org[0], "rep@acme.example")
    client.get("/v2/me", headers=bearer(key[:-1]))
    assert last_used(app, key) is None


def test_many_keys_used_for_the_first_time_at_once(app):
    """A key's first use reads its row, then records the use: never a "database is locked"."""
    import threading

    keys = [generate_key(app, create_org(app, f"org{n}")[1]) for n in range(12)]
    barrier = threading.Barrier(len(keys))
    statuses: list[int] = []

    def first_use(key: str) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.get("/v2/approvals", headers=bearer(key)).status_code)

    threads = [threading.Thread(target=first_use, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(keys)
    with app.app_context():
        used = db.session.execute(db.select(ApiKey).where(ApiKey.last_used_at.is_not(None)))
        assert len(used.scalars().all()) == len(keys)
