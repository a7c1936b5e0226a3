"""Seed a DiscountFlow database for a load run, with the app's own services, and write the
manifest the Locust clients read (keys, people, SKUs, approvals to decide).

Run by ``loadtest/run.py`` in a subprocess, with the service's environment (``DATABASE_URL``,
``SECRET_KEY`` …) and after ``flask --app app db upgrade``::

    python -m loadtest.seed --manifest M.json --organizations 60 --deciders 4 --pending 80 \
        --receiver http://127.0.0.1:PORT/hooks

Every organization is made the way a real one is (``create_organization``, ``add_member``,
``create_level``, ``create_product``, ``generate_key``, ``create_endpoint``), so its audit
trail and webhook outbox are what real use produces. Passwords and keys are hashed at
``BCRYPT_ROUNDS`` (the run sets 4, as ``bench/`` does: the first check of each key in each
worker process costs one bcrypt, which is not what a load run measures).

Each organization has:

* the owner (who holds the rank-1 level, so the organization's API keys can decide), an admin,
  a rep, a manager (rank 1), a VP (rank 2) and a CFO (rank 3);
* three approval levels — Manager up to 15 %, VP up to 30 %, CFO up to 100 %;
* the price book of the demo (``discountflow/approvals/demo.py``): SEAT-PRO, SEAT-BASIC,
  SUPPORT-GOLD and ONBOARDING in USD and EUR (the retired SEAT-LEGACY is left out);
* a full-access (``sk_test_…``) and a read-only (``rk_test_…``) key.

Every shared organization starts with 8 approvals of its rep (drafts, pending, auto-approved),
so the pollers read real pages. *Decider* organizations hold ``--pending`` approvals that their
rep created and submitted (10 % off: one rank-1 step), which the API deciders approve or reject
with the organization's key: the key counts as the owner, who did not take part (four eyes).
One more organization's key is the *over-budget* key, used by nothing but the client that
exceeds its limit. Every third organization and every decider organization has a webhook
endpoint at the receiver.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "load-test-password-1"  # every seeded person's dashboard password
LEVELS = [("Manager", 1, 15), ("VP", 2, 30), ("CFO", 3, 100)]  # name, rank, max discount %
PEOPLE = [  # local part of the email, role, level name (or None)
    ("admin", "admin", None),
    ("rep", "member", None),
    ("manager", "member", "Manager"),
    ("vp", "member", "VP"),
    ("cfo", "member", "CFO"),
]
CURRENCIES = ("USD", "EUR")
WEBHOOK_EVERY = 3  # every third shared organization has a webhook endpoint
PENDING_DISCOUNT = 10  # percent: one rank-1 step (Manager covers up to 15 %)
SHARED_APPROVALS = 8  # approvals of its rep in each shared organization, before the load


def book() -> list[dict[str, Any]]:
    """The active products of the demo's price book: SKU, name and prices per currency."""
    from discountflow.approvals.demo import PRODUCTS

    return [
        {
            "sku": sku,
            "name": name,
            "description": description,
            "prices": {c: p for c, p in prices.items() if c in CURRENCIES},
        }
        for sku, name, description, prices, active in PRODUCTS
        if active
    ]


def invalid_keys(valid_key: str) -> list[dict[str, str]]:
    """Keys that must each get the documented 401, one of each kind the README names.

    ``malformed`` (wrong checksum) and ``unknown`` (an id no key has) are refused before any
    bcrypt work; ``wrong_secret`` (a real lookup id, another secret) costs one bcrypt check and
    counts against the client address's failure budget (``AUTH_FAILURE_LIMIT``), so the
    clients send it rarely. ``other_environment`` is a well-formed production key on staging.
    """
    from discountflow.auth.keys import checksum

    body = valid_key[:-6]  # the key without its checksum
    wrong_secret = body[:-22] + secrets.token_hex(11)  # the same lookup id, another secret
    unknown_body = f"sk_test_{secrets.token_hex(6)}_{secrets.token_hex(11)}"
    live_body = "sk_live_" + body[len("sk_test_") :]
    bad_checksum = "AAAAAA" if not valid_key.endswith("AAAAAA") else "BBBBBB"
    return [
        {"kind": "malformed", "key": body + bad_checksum},
        {"kind": "unknown", "key": unknown_body + checksum(unknown_body)},
        {"kind": "wrong_secret", "key": wrong_secret + checksum(wrong_secret)},
        {"kind": "other_environment", "key": live_body + checksum(live_body)},
        {"kind": "missing", "key": ""},
    ]


def seed_organization(
    number: int, role: str, pending: int, receiver: str | None, products: list[dict[str, Any]]
) -> dict[str, Any]:
    """Create one organization (inside an app context) and return its manifest entry."""
    from discountflow.actors import Actor, Surface
    from discountflow.approvals import levels, services
    from discountflow.approvals.schemas import ApprovalCreate, LevelCreate
    from discountflow.auth.services import generate_key
    from discountflow.extensions import db
    from discountflow.organizations import services as organizations
    from discountflow.organizations.models import User
    from discountflow.organizations.schemas import MemberUpdate
    from discountflow.products import services as catalogue
    from discountflow.products.schemas import ProductCreate
    from discountflow.webhooks import services as webhooks
    from discountflow.webhooks.schemas import EndpointCreate

    slug = f"lt-{role[:3]}-{number:03d}"
    organization = organizations.create_organization(
        f"Load test {role} {number}",
        slug=slug,
        owner_email=f"owner@{slug}.example",
        owner_password=PASSWORD,
    )
    owner = Actor.for_cli(organization)
    people: dict[str, str] = {"owner": owner.user.id}
    for local, member_role, _ in PEOPLE:
        member = organizations.add_member(
            owner, email=f"{local}@{slug}.example", password=PASSWORD, role=member_role
        )
        people[local] = member.id
    level_ids: dict[str, str] = {}
    for name, rank, percent in LEVELS:
        level_ids[name] = levels.create_level(
            owner, LevelCreate(name=name, rank=rank, max_discount_percent=percent)
        ).id
    holders = {"owner": "Manager", **{local: level for local, _, level in PEOPLE if level}}
    for person, level in holders.items():
        organizations.update_member(
            owner, people[person], MemberUpdate(approval_level=level_ids[level])
        )
    for product in products:
        catalogue.create_product(
            owner,
            ProductCreate(
                sku=product["sku"],
                name=product["name"],
                description=product["description"],
                prices=[
                    {"currency": c, "unit_list_price": p} for c, p in product["prices"].items()
                ],
            ),
        )
    seat_price = next(p for p in products if p["sku"] == "SEAT-PRO")["prices"]["USD"]
    full_key = generate_key(owner)[1]
    read_key = generate_key(owner, read_only=True)[1]
    webhook_secret = None
    if receiver and (role == "decider" or (role == "shared" and number % WEBHOOK_EVERY == 0)):
        _, webhook_secret = webhooks.create_endpoint(
            owner, EndpointCreate(url=f"{receiver}/{slug}", events=["approval.*"])
        )
    rep = Actor.for_user(db.session.get(User, people["rep"]), Surface.CLI)
    # Shared organizations get a few approvals of their rep (drafts, pending, approved) so
    # that the pollers read real pages from the start; deciders get ``pending`` to decide.
    count = pending if role == "decider" else (SHARED_APPROVALS if role == "shared" else 0)
    pending_ids = []
    for index in range(count):
        discount = PENDING_DISCOUNT if role == "decider" or index % 4 else 3  # 3 %: auto
        view = services.create_approval(
            rep,
            ApprovalCreate(
                title=f"Seeded deal {index}",
                customer=f"Customer {index % 17}",
                currency="USD",
                line_items=[
                    {
                        "sku": "SEAT-PRO",
                        "quantity": 10 + index % 40,
                        "unit_price": seat_price * (100 - discount) // 100,
                    }
                ],
                submit=role == "decider" or index % 3 != 0,  # a third stay drafts
            ),
        )
        if role == "decider":
            pending_ids.append(view.approval.id)
    return {
        "id": organization.id,
        "slug": slug,
        "role": role,
        "full_key": full_key,
        "read_key": read_key,
        "people": people,
        "emails": {person: f"{person}@{slug}.example" for person in people},
        "webhook_secret": webhook_secret,
        "pending": pending_ids,
    }


def seed(organizations: int, deciders: int, pending: int, receiver: str | None) -> dict[str, Any]:
    """Seed every organization; return the manifest (see the module's docstring)."""
    from discountflow import create_app
    from discountflow.extensions import db

    app = create_app()
    products = book()
    entries: list[dict[str, Any]] = []
    with app.app_context():
        for number in range(organizations):
            entries.append(seed_organization(number, "shared", 0, receiver, products))
        for number in range(deciders):
            entries.append(seed_organization(number, "decider", pending, receiver, products))
        over = seed_organization(0, "over-budget", 0, None, products)
        entries.append(over)
        limit = app.config["API_RATE_LIMIT"]
        db.session.remove()
        db.engine.dispose()
    return {
        "created": time.time(),
        "password": PASSWORD,
        "api_rate_limit": limit,
        "products": products,
        "organizations": entries,
        "over_budget": {"slug": over["slug"], "key": over["full_key"]},
        "invalid_keys": invalid_keys(entries[0]["full_key"]),
    }


def main(argv: list[str] | None = None) -> None:
    """Seed from the command line; write the manifest as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--organizations", type=int, default=60)
    parser.add_argument("--deciders", type=int, default=4)
    parser.add_argument("--pending", type=int, default=60, help="per decider organization")
    parser.add_argument("--receiver", default=None, help="webhook receiver base URL")
    args = parser.parse_args(argv)
    started = time.monotonic()
    manifest = seed(args.organizations, args.deciders, args.pending, args.receiver)
    args.manifest.write_text(json.dumps(manifest, indent=1))
    print(
        f"seeded {len(manifest['organizations'])} organizations in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
