"""Managing API keys: generate, roll, revoke, status — owner only, effective on the next request."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from discountflow.actors import Actor, Surface
from discountflow.auth import services as auth
from discountflow.auth.authentication import authenticate
from discountflow.auth.keys import parse_key
from discountflow.auth.models import ApiKey
from discountflow.errors import Conflict, InvalidParameter, NotFound, PermissionDenied
from discountflow.extensions import db
from discountflow.organizations.models import User

from .conftest import add_member, bearer, generate_key, owner_actor


def status(client, key):
    return client.get("/v2/me", headers=bearer(key)).status_code


def owner(app, org):
    return owner_actor(org[0])


def test_generate_invalidates_the_previous_key_at_once(app, client, org):
    first = generate_key(app, org[1])
    assert status(client, first) == 200  # verified and remembered by this process
    second = generate_key(app, org[1])
    assert status(client, first) == 401
    assert status(client, second) == 200


def test_generating_one_slot_leaves_the_other(app, client, org):
    full = generate_key(app, org[1])
    read_only = generate_key(app, org[1], read_only=True)
    generate_key(app, org[1], read_only=True)
    assert status(client, full) == 200
    assert status(client, read_only) == 401


def test_roll_keeps_the_old_key_for_its_grace_period(app, client, org, clock):
    old = generate_key(app, org[1])
    assert status(client, old) == 200
    with app.app_context():
        api_key, new = auth.roll_key(owner(app, org), grace=timedelta(hours=24))
        assert api_key.expires_at is None
    assert status(client, old) == 200
    assert status(client, new) == 200
    clock.advance(hours=23, minutes=59)
    assert status(client, old) == 200
    clock.advance(minutes=1)
    assert status(client, old) == 401
    assert status(client, new) == 200


def test_roll_with_zero_grace_ends_the_old_key_now(app, client, org):
    old = generate_key(app, org[1])
    with app.app_context():
        _, new = auth.roll_key(owner(app, org), grace=timedelta(0))
    assert status(client, old) == 401
    assert status(client, new) == 200


def test_roll_never_extends_an_expiring_key(app, client, org, clock):
    old = generate_key(app, org[1], expires_in_days=1)
    with app.app_context():
        auth.roll_key(owner(app, org), grace=timedelta(days=7))
    clock.advance(days=1)
    assert status(client, old) == 401


def test_generate_during_a_roll_ends_the_key_in_grace_too(app, client, org):
    old = generate_key(app, org[1])
    with app.app_context():
        _, rolled = auth.roll_key(owner(app, org), grace=timedelta(days=1))
    newest = generate_key(app, org[1])
    assert (status(client, old), status(client, rolled), status(client, newest)) == (401, 401, 200)


def test_roll_without_a_key_is_refused(app, org):
    with app.app_context(), pytest.raises(Conflict):
        auth.roll_key(owner(app, org), grace=timedelta(hours=1))


@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=31)])
def test_roll_grace_is_bounded(app, org, grace):
    generate_key(app, org[1])
    with app.app_context(), pytest.raises(InvalidParameter):
        auth.roll_key(owner(app, org), grace=grace)


def test_revoke_is_immediate_and_covers_keys_in_grace(app, client, org):
    old = generate_key(app, org[1])
    with app.app_context():
        _, new = auth.roll_key(owner(app, org), grace=timedelta(days=1))
    assert status(client, new) == 200
    with app.app_context():
        revoked = auth.revoke_key(owner(app, org))
    assert sorted(revoked) == sorted([parse_key(old).key_id, parse_key(new).key_id])
    assert status(client, old) == 401
    assert status(client, new) == 401
    with app.app_context(), pytest.raises(NotFound):
        auth.revoke_key(owner(app, org))


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_expiry_is_bounded(app, org, days):
    with app.app_context(), pytest.raises(InvalidParameter):
        auth.generate_key(owner(app, org), expires_in_days=days)


def test_slot_status(app, client, org):
    with app.app_context():
        slots = auth.key_slots(owner(app, org))
        assert [(s.read_only, s.status, s.current) for s in slots] == [
            (False, "No API key generated", None),
            (True, "No API key generated", None),
        ]
    key = generate_key(app, org[1])
    client.get("/v2/me", headers=bearer(key))
    with app.app_context():
        full, read_only = auth.key_slots(owner(app, org))
        assert full.status == "Active"
        assert full.current.id == parse_key(key).key_id
        assert full.current.last_four == key[-4:]
        assert full.current.last_used_at is not None
        assert read_only.status == "No API key generated"
        auth.revoke_key(owner(app, org))
        assert auth.key_slots(owner(app, org))[0].status == "No API key generated"


@pytest.mark.parametrize("role", ["admin", "member"])
def test_only_the_owner_manages_keys(app, org, role):
    generate_key(app, org[1])
    user_id = add_member(app, org[0], f"{role}@acme.example", role=role)
    with app.app_context():
        user = Actor.for_user(db.session.get(User, user_id), Surface.DASHBOARD)
        for attempt in (
            lambda: auth.generate_key(user),
            lambda: auth.roll_key(user, grace=timedelta(hours=1)),
            lambda: auth.revoke_key(user),
            lambda: auth.key_slots(user),
        ):
            with pytest.raises(PermissionDenied):
                attempt()


def test_an_api_key_cannot_manage_keys(app, client, key):
    client.get("/v2/me", headers=bearer(key))
    with app.test_request_context(headers=bearer(key)):
        principal = authenticate(f"Bearer {key}", "127.0.0.1")
        actor = Actor.for_api_key(principal.organization_id, principal.key_id, read_only=False)
        with pytest.raises(PermissionDenied):
            auth.generate_key(actor)


def test_keys_are_stored_only_as_bcrypt_hashes(app, org):
    key = generate_key(app, org[1])
    with app.app_context():
        row = db.session.execute(select(ApiKey)).scalar_one()
        stored = " ".join(str(value) for value in row.__dict__.values())
        secret = key.split("_")[-1]
        assert key not in stored and secret[:22] not in stored
        assert row.key_hash.startswith("$2b$04$")
        assert row.created_by_id == org[1]


def test_no_key_text_in_any_log_line(app, client, org, caplog, runner):
    caplog.set_level(logging.DEBUG)
    key = generate_key(app, org[1])
    client.get("/v2/me", headers=bearer(key))
    client.get(f"/v2/me?api_key={key}")
    client.get("/v2/me", headers=bearer(key[:-1] + "x"))
    result = runner.invoke(args=["keys", "generate", "--org", "acme"])
    printed = result.output.strip().splitlines()[-1]
    with app.app_context():
        auth.roll_key(owner(app, org), grace=timedelta(hours=1))
        auth.revoke_key(owner(app, org))
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the flows above log what they do"
    for secret in (key, printed, key.split("_")[-1], printed.split("_")[-1]):
        assert secret not in logged


def test_changes_reach_another_process_on_its_next_request(tmp_path):
    """Two apps on one database stand for two worker processes: each keeps its own memory."""
    from .conftest import create_org, make_app

    first, second = make_app(tmp_path), make_app(tmp_path)
    _, owner_id = create_org(first)
    key = generate_key(first, owner_id)
    assert status(second.test_client(), key) == 200  # remembered by the second process
    replacement = generate_key(first, owner_id)
    assert status(second.test_client(), key) == 401
    assert status(second.test_client(), replacement) == 200
    with first.app_context():
        auth.revoke_key(owner_actor(db.session.get(User, owner_id).organization_id))
    assert status(second.test_client(), replacement) == 401
