"""The ``flask`` commands, as an operator uses them."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from discountflow.approvals.models import Approval
from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.organizations.models import Organization, User

from .conftest import PASSWORD, add_member, bearer, create_org
from .dashboard import sign_in

ROOT = Path(__file__).resolve().parents[1]
NEW_PASSWORD = "a new staple battery"

KEY_LINE = re.compile(r"^(sk|rk)_(test|live)_\S+$", re.MULTILINE)


def key_from(output: str) -> str:
    keys = KEY_LINE.findall(output)
    assert len(keys) == 1, output
    return KEY_LINE.search(output).group(0)


def test_demo_creates_an_organization_and_prints_a_working_key(app, runner, client):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "owner@demo.example" in result.output
    key = key_from(result.output)
    assert f'curl -H "Authorization: Bearer {key}" http://127.0.0.1:8000/v2/approvals' in (
        result.output
    )
    response = client.get("/v2/approvals?limit=100", headers=bearer(key))
    assert response.status_code == 200
    # A living organization: an approval in every status, three levels, approvers.
    statuses = {approval["status"] for approval in response.get_json()["data"]}
    assert statuses == {
        "draft",
        "pending",
        "changes_requested",
        "approved",
        "rejected",
        "canceled",
        "expired",
    }
    levels = client.get("/v2/approval_levels", headers=bearer(key)).get_json()["data"]
    assert sorted((level["rank"], level["name"]) for level in levels) == [
        (1, "Sales manager"),
        (2, "VP Sales"),
        (3, "CFO"),
    ]
    events = client.get("/v2/events?limit=100", headers=bearer(key)).get_json()["data"]
    assert {"approval.step_approved", "approval.rejected", "comment.created"} <= {
        event["type"] for event in events
    }

    with app.app_context():
        organization = db.session.execute(
            select(Organization).where(Organization.slug == "demo")
        ).scalar_one()
        roles = sorted(u.role for u in organization.members)
        assert roles == ["admin", *["member"] * 6, "owner"]
        approvers = sorted(u.email for u in organization.members if u.approval_level_id)
        assert approvers == [
            "cfo@demo.example",
            "manager@demo.example",
            "owner@demo.example",
            "vp@demo.example",
        ]


DEMO_PASSWORD = re.compile(r"everyone's password \(printed once\): (\S+)$", re.MULTILINE)
WAITING = re.compile(r"^  (apr_\w+)  (.+)$", re.MULTILINE)


def test_demo_says_how_to_sign_in_and_to_whom_each_sign_in_belongs(app, runner, client):
    output = runner.invoke(args=["demo"]).stdout
    lines = output.splitlines()
    password = DEMO_PASSWORD.search(output).group(1)
    assert lines[:8] == [
        "Created organization demo (Demo Inc.) with members, approval levels, a price book and "
        "approvals.",
        "Sign in at http://127.0.0.1:8000/sign-in with organization demo (when the page asks "
        f"for one) and everyone's password (printed once): {password}",
        "  owner@demo.example: the owner (Settings → API Keys); approves at the CFO level",
        "  admin@demo.example: an admin",
        "  rep@demo.example, sam@demo.example, nora@demo.example: reps, who ask for discounts",
        "  manager@demo.example: approves at the Sales manager level",
        "  vp@demo.example: approves at the VP Sales level",
        "  cfo@demo.example: approves at the CFO level",
    ]
    for email in ("owner", "admin", "rep", "sam", "manager", "vp", "cfo"):
        signed_in = sign_in(app.test_client(), f"{email}@demo.example", password)
        assert signed_in.status_code == 303, email
    create_org(app, "acme")  # a second organization: now the page asks which
    assert 'name="organization"' in client.get("/sign-in").text
    assert sign_in(client, "owner@demo.example", password, organization="demo").status_code == 303


def test_the_demos_key_approves_and_rejects_what_the_demo_says_waits_for_it(app, runner, client):
    output = runner.invoke(args=["demo"]).stdout
    key = key_from(output)
    assert (
        "It acts as the owner, owner@demo.example, who approves at the CFO level: "
        "2 approvals wait for its decision:"
    ) in output
    waiting = WAITING.findall(output)
    assert sorted(title for _, title in waiting) == [
        "Initrode enterprise licence (Initrode)",
        "Massive Dynamic rollout (Massive Dynamic)",
    ]
    (first, _), (second, _) = waiting
    curls = [line for line in output.splitlines() if line.startswith("  curl ")]
    assert curls[1:] == [
        f'  curl -H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
        f'-d \'{{"comment": "Approved for a 3-year term."}}\' '
        f"http://127.0.0.1:8000/v2/approvals/{first}/approve",
        f'  curl -H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
        f'-d \'{{"comment": "Too deep for this deal."}}\' '
        f"http://127.0.0.1:8000/v2/approvals/{second}/reject",
    ]
    approved = client.post(
        f"/v2/approvals/{first}/approve",
        json={"comment": "Approved for a 3-year term."},
        headers=bearer(key),
    )
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "approved"
    rejected = client.post(
        f"/v2/approvals/{second}/reject",
        json={"comment": "Too deep for this deal."},
        headers=bearer(key),
    )
    assert rejected.status_code == 200, rejected.get_json()
    assert rejected.get_json()["status"] == "rejected"
    again = runner.invoke(args=["demo"]).stdout  # nothing waits for the key now
    assert (
        "It acts as the owner, owner@demo.example, who approves at the CFO level: "
        "0 approvals wait for its decision."
    ) in again
    assert not WAITING.findall(again)


def test_demo_on_a_new_database_prints_each_log_line_once(tmp_path):
    database = f"sqlite:///{tmp_path / 'new.sqlite'}"
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "demo"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DATABASE")},
            "DATABASE_URL": database,
            "DISCOUNTFLOW_ENV": "staging",
            "BCRYPT_ROUNDS": "4",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    key_from(result.stdout)
    messages = [line.split(" INFO ", 1)[-1] for line in result.stderr.splitlines()]
    assert len(messages) == len(set(messages)), result.stderr
    assert sum("organization created: org_" in line for line in messages) == 1
    assert sum("api_key.generated: key_" in line for line in messages) == 1
    assert sum("Running upgrade  -> 0001" in line for line in messages) == 1


def test_demo_run_twice_keeps_the_data_and_prints_a_new_key(app, runner, client):
    first_run = runner.invoke(args=["demo"])
    first = key_from(first_run.output)
    second_run = runner.invoke(args=["demo"])
    assert second_run.exit_code == 0
    assert DEMO_PASSWORD.search(first_run.output).group(1) not in second_run.output
    assert second_run.stdout.splitlines()[0] == (
        "Organization demo exists (its sign-ins were printed when it was made; "
        "`flask --app app users reset-password EMAIL --org demo` sets a new password)."
    )
    second = key_from(second_run.output)
    assert client.get("/v2/me", headers=bearer(first)).status_code == 401
    assert client.get("/v2/me", headers=bearer(second)).status_code == 200
    with app.app_context():
        # The eleven of today, and six months of history (Insights' charts).
        assert len(db.session.execute(select(Approval)).scalars().all()) == 11 + 42


def test_create_org_with_password_on_stdin(app, runner):
    result = runner.invoke(
        args=[
            "create-org",
            "Initech Ltd",
            "--owner-email",
            "Bill@Initech.example",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "initech-ltd" in result.output
    with app.app_context():
        user = db.session.execute(select(User)).scalar_one()
        assert (user.email, user.role) == ("bill@initech.example", "owner")
        assert user.password_hash.startswith("$2b$")
        assert PASSWORD not in user.password_hash


def flask_env(app, **settings: str) -> dict[str, str]:
    """The environment of a ``flask --app app`` process on the test's database."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATABASE")},
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "DISCOUNTFLOW_ENV": "staging",
        "BCRYPT_ROUNDS": "4",
        **settings,
    }


def flask_process(app, *args: str, stdin: str | None) -> subprocess.CompletedProcess:
    """``flask --app app ARGS`` as an operator's script runs it: standard input is a pipe
    holding ``stdin`` (or the empty /dev/null), never a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=flask_env(app),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_org_prompts_for_the_password_without_echo(app, runner, monkeypatch):
    monkeypatch.setattr("discountflow.cli.stdin_is_a_terminal", lambda: True)
    result = runner.invoke(
        args=["create-org", "Umbrella", "--owner-email", "a@umbrella.example"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert result.output.startswith("Password (asked twice): \nRepeat for confirmation: \n")


ADD_MEMBER = ["add-member", "--org", "acme", "--email", "rep@acme.example"]


@pytest.mark.parametrize(
    "args",
    [
        ["create-org", "Initech", "--owner-email", "bill@initech.example"],
        ADD_MEMBER,
        ["users", "reset-password", "owner@acme.example", "--org", "acme"],
    ],
    ids=["create-org", "add-member", "reset-password"],
)
def test_without_a_terminal_a_password_is_one_line_of_stdin(app, runner, org, args):
    result = runner.invoke(args=args, input=PASSWORD + "\nignored\n")
    assert result.exit_code == 0, result.output
    assert "Password" not in result.output and PASSWORD not in result.output
    for stdin in ("", "\n"):
        empty = runner.invoke(args=args, input=stdin)
        assert empty.exit_code == 1
        assert empty.output == (
            "Error: No password on standard input: pipe it in as one line "
            '(echo "$PASSWORD" | flask --app app …), or run the command at a terminal.\n'
        )


def test_a_password_piped_to_a_real_process_reads_cleanly(app, org):
    added = flask_process(app, *ADD_MEMBER, stdin=PASSWORD + "\n")
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout.startswith("Added rep@acme.example as member (usr_")
    assert sign_in(app.test_client(), "rep@acme.example").status_code == 303
    empty = flask_process(app, *ADD_MEMBER[:-1], "sam@acme.example", stdin=None)
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.startswith("Error: No password on standard input: ")
    assert len(empty.stderr.splitlines()) == 1


def test_create_org_refuses_bad_input_cleanly(app, runner):
    for args, stdin in (
        (["create-org", "X", "--owner-email", "not-an-email", "--password-stdin"], PASSWORD),
        (["create-org", "X", "--owner-email", "a@x.example", "--password-stdin"], "short"),
        (["create-org", "X", "--owner-email", "a@x.example", "--password-stdin"], "é" * 40),
    ):
        result = runner.invoke(args=args, input=stdin + "\n")
        assert result.exit_code == 1
        assert result.output.startswith("Error: ")
    runner.invoke(
        args=["create-org", "Acme", "--owner-email", "a@acme.example", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    again = runner.invoke(
        args=["create-org", "Acme", "--owner-email", "b@acme.example", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert again.exit_code == 1 and "exists" in again.output


def test_add_member(app, runner, org):
    result = runner.invoke(
        args=[
            "add-member",
            "--org",
            "acme",
            "--email",
            "rep@acme.example",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == "rep@acme.example")).scalar_one()
        assert user.role == "admin" and user.organization_id == org[0]


def test_keys_commands(app, runner, client, org):
    generated = runner.invoke(args=["keys", "generate", "--org", org[0], "--expires-in-days", "30"])
    assert generated.exit_code == 0, generated.output
    full = key_from(generated.output)
    read_only = key_from(
        runner.invoke(args=["keys", "generate", "--org", "acme", "--read-only"]).output
    )
    assert full.startswith("sk_test_") and read_only.startswith("rk_test_")
    assert client.get("/v2/me", headers=bearer(full)).status_code == 200

    listing = runner.invoke(args=["keys", "list", "--org", "acme"]).output
    assert "full access: Active" in listing
    assert "read-only: Active" in listing
    assert f"…{full[-4:]} current" in listing
    assert full not in listing

    rolled = runner.invoke(args=["keys", "roll", "--org", "acme", "--grace", "1h"])
    assert rolled.exit_code == 0, rolled.output
    new = key_from(rolled.output)
    assert client.get("/v2/me", headers=bearer(full)).status_code == 200
    assert client.get("/v2/me", headers=bearer(new)).status_code == 200
    assert "expiring" in runner.invoke(args=["keys", "list", "--org", "acme"]).output

    refused = runner.invoke(args=["keys", "revoke", "--org", "acme"], input="n\n")
    assert refused.exit_code == 1 and "no undo" in refused.output
    assert client.get("/v2/me", headers=bearer(new)).status_code == 200

    revoked = runner.invoke(args=["keys", "revoke", "--org", "acme"], input="y\n")
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output.count("Revoked key_") == 2
    assert client.get("/v2/me", headers=bearer(new)).status_code == 401
    assert client.get("/v2/me", headers=bearer(full)).status_code == 401
    assert client.get("/v2/me", headers=bearer(read_only)).status_code == 200
    assert "full access: No API key generated" in (
        runner.invoke(args=["keys", "list", "--org", "acme"]).output
    )


def test_keys_commands_report_errors(app, runner, org):
    for args in (
        ["keys", "generate", "--org", "nope"],
        ["keys", "roll", "--org", "acme", "--grace", "1h"],
        ["keys", "roll", "--org", "acme", "--grace", "soon"],
        ["keys", "revoke", "--org", "acme", "--yes"],
        ["keys", "generate", "--org", "acme", "--expires-in-days", "0"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code != 0, args
        assert "Error" in result.output, args
        assert "Traceback" not in result.output


def test_approvals_expire_marks_lapsed_prices(app, runner, client):
    runner.invoke(args=["demo"])
    result = runner.invoke(args=["approvals", "expire"])
    assert result.exit_code == 0, result.output
    assert result.output == "Expired 0 approvals.\n"  # the demo's lapsed price expired already
    with app.app_context():
        approval = (
            db.session.execute(select(Approval).where(Approval.status == "approved"))
            .scalars()
            .first()
        )
        approval.valid_until = approval.decided_at
        db.session.commit()
    result = runner.invoke(args=["approvals", "expire"])
    assert result.output == "Expired 1 approval.\n"


# --- reset-password ----------------------------------------------------------------------------

RESET = ["users", "reset-password", "Rep@Acme.example", "--org", "acme"]


def test_reset_password_sets_it_and_ends_that_members_dashboard_sessions(app, runner, org):
    member = add_member(app, org[0], "rep@acme.example")
    laptop, phone, owner = app.test_client(), app.test_client(), app.test_client()
    for client, email in ((laptop, "rep"), (phone, "rep"), (owner, "owner")):
        assert sign_in(client, f"{email}@acme.example").status_code == 303
    result = runner.invoke(args=RESET, input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Set a new password for rep@acme.example ({member}); ended 2 dashboard sessions.\n"
    )
    assert laptop.get("/inbox").status_code == 302  # signed out, on every device
    assert phone.get("/inbox").status_code == 302
    assert owner.get("/inbox").status_code == 200  # nobody else's
    assert sign_in(app.test_client(), "rep@acme.example").status_code == 401
    assert sign_in(app.test_client(), "rep@acme.example", NEW_PASSWORD).status_code == 303
    with app.app_context():
        (event,) = db.session.execute(
            select(Event).where(Event.type == "member.password_reset")
        ).scalars()
        assert event.data == {"member": member, "email": "rep@acme.example"}
        assert (event.actor_type, event.actor_user_id, event.surface) == ("user", org[1], "cli")
        assert NEW_PASSWORD not in str(event.data)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["users", "reset-password", "rep@acme.example", "--org", "nope"],
            NEW_PASSWORD,
            "Error: No organization with id or slug 'nope'.",
        ),
        (
            ["users", "reset-password", "who@acme.example", "--org", "acme"],
            NEW_PASSWORD,
            "Error: No member of acme has the email 'who@acme.example'.",
        ),
        (
            ["users", "reset-password", "not an email", "--org", "acme"],
            NEW_PASSWORD,
            "Error: Enter a valid email address.",
        ),
        (RESET, "short", "Error: The password must be at least 8 characters."),
        (RESET, "é" * 40, "Error: The password must be at most 72 bytes."),
    ],
)
def test_reset_password_refuses_in_one_line(app, runner, org, args, stdin, message):
    add_member(app, org[0], "rep@acme.example")
    result = runner.invoke(args=args, input=stdin + "\n")
    assert (result.exit_code, result.output) == (1, message + "\n")
    assert sign_in(app.test_client(), "rep@acme.example").status_code == 303  # unchanged


def test_reset_password_needs_to_know_whom(runner, org):
    result = runner.invoke(args=["users", "reset-password", "--org", "acme"])
    assert result.exit_code == 2 and "Missing argument 'EMAIL'" in result.output


def _run_at_a_terminal(app, args: list[str], typed: list[str]) -> tuple[int, str]:
    """Run ``flask --app app ARGS`` with a terminal as its standard input and output, typing
    each of ``typed`` after the prompt before it; return its exit code and what it showed."""
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=flask_env(app),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    try:
        for line in typed:
            deadline = time.monotonic() + 30
            while not shown.rstrip().endswith(b":") and time.monotonic() < deadline:
                shown += os.read(main, 1024)
            shown += b"|"  # where the next answer was typed
            os.write(main, line.encode() + b"\n")
        while True:
            try:
                chunk = os.read(main, 1024)
            except OSError:  # the process ended and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        process.wait(timeout=30)
        os.close(main)
    return process.returncode, shown.decode().replace("\r\n", "\n")


def test_reset_password_at_a_terminal_asks_twice_and_shows_nothing_typed(app, org):
    returncode, shown = _run_at_a_terminal(
        app,
        ["users", "reset-password", "owner@acme.example", "--org", "acme"],
        [NEW_PASSWORD, NEW_PASSWORD],
    )
    assert returncode == 0, shown
    assert NEW_PASSWORD not in shown
    assert shown == (
        "New password (asked twice): |\nRepeat for confirmation: |\n"
        f"Set a new password for owner@acme.example ({org[1]}); ended 0 dashboard sessions.\n"
    )
    assert sign_in(app.test_client(), "owner@acme.example", NEW_PASSWORD).status_code == 303
