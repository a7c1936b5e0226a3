"""A living demo organization: members, three approval levels, a price book, approvals in every
status.

Everything goes through the same services as the API, acting from the CLI surface, so the
demo's decisions, comments and audit trail are what real use would have produced.
"""

from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from ..actors import Actor, Surface
from ..audit.models import Event
from ..database import utcnow
from ..extensions import db
from ..organizations import services as organizations
from ..organizations.models import Organization, Role, User
from ..organizations.schemas import MemberUpdate
from ..pagination import PageRequest
from ..products import services as products
from ..products.schemas import ProductCreate
from . import levels, queries, services
from .models import Approval, ApprovalLevel, ApprovalStatus, Decision
from .queries import ApprovalView
from .schemas import ApprovalCreate, ApprovalListQuery, LevelCreate, LineItemInput

MEMBERS = [
    ("admin@demo.example", "Adam Admin", Role.ADMIN),
    ("rep@demo.example", "Rita Rep", Role.MEMBER),
    ("sam@demo.example", "Sam Seller", Role.MEMBER),
    ("nora@demo.example", "Nora Novak", Role.MEMBER),
    ("manager@demo.example", "Max Manager", Role.MEMBER),
    ("vp@demo.example", "Vera VP", Role.MEMBER),
    ("cfo@demo.example", "Carl CFO", Role.MEMBER),
]
# The owner holds the top level too: the API key the demo prints acts as the owner (four eyes
# and the approval level included), so with it a newcomer can decide what waits at that level.
LEVELS = [  # name, rank, largest discount in percent, largest total discount, who holds it
    ("Sales manager", 1, 15, {"amount": 500_000, "currency": "USD"}, ["manager@demo.example"]),
    ("VP Sales", 2, 30, None, ["vp@demo.example"]),
    ("CFO", 3, 100, None, ["cfo@demo.example", "owner@demo.example"]),
]
# Who signs in as whom (the demo command prints these beside the one password).
SIGN_INS = [
    ("owner@demo.example", "the owner (Settings → API Keys); approves at the CFO level"),
    ("admin@demo.example", "an admin"),
    ("rep@demo.example, sam@demo.example, nora@demo.example", "reps, who ask for discounts"),
    ("manager@demo.example", "approves at the Sales manager level"),
    ("vp@demo.example", "approves at the VP Sales level"),
    ("cfo@demo.example", "approves at the CFO level"),
]


CUSTOMERS = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Corp",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Soylent",
    "Cyberdyne",
    "Tyrell Corp",
    "Wonka",
    "Oscorp",
]
# The price book: SKU, name, description, list prices (minor units), active.
PRODUCTS = [
    (
        "SEAT-PRO",
        "Pro seat, annual",
        "One named user, billed yearly.",
        {"USD": 12_000, "EUR": 11_000},
        True,
    ),
    (
        "SEAT-BASIC",
        "Basic seat, annual",
        "One named user, core features.",
        {"USD": 6_000, "EUR": 5_500},
        True,
    ),
    (
        "SUPPORT-GOLD",
        "Gold support, annual",
        "24/7 support, 1-hour response.",
        {"USD": 250_000, "EUR": 230_000},
        True,
    ),
    (
        "ONBOARDING",
        "Onboarding package",
        "Ten hours of guided set-up.",
        {"USD": 500_000, "EUR": 460_000},
        True,
    ),
    ("SEAT-LEGACY", "Legacy seat (retired)", "Sold until last year.", {"USD": 9_000}, False),
]


def _request(
    title: str, customer: str, discount_percent: int, *, currency: str = "USD"
) -> ApprovalCreate:
    """A two-line request on the price book whose larger line carries ``discount_percent``."""
    book = {sku: prices[currency] for sku, _, _, prices, _ in PRODUCTS if currency in prices}
    return ApprovalCreate(
        title=title,
        customer=customer,
        currency=currency,
        deal_reference=f"CRM-{secrets.randbelow(90000) + 10000}",
        justification="Competitive deal; the customer is comparing us with two vendors.",
        line_items=[
            {
                "sku": "SEAT-PRO",
                "quantity": 50,
                "unit_price": book["SEAT-PRO"] * (100 - discount_percent) // 100,
            },
            {
                "sku": "SUPPORT-GOLD",
                "quantity": 1,
                "unit_price": book["SUPPORT-GOLD"] * (100 - min(discount_percent, 5)) // 100,
            },
        ],
    )


# Six months of history, so that every chart of Insights has something to say: who asks (the
# three reps), how deep (percent off the larger line), what happened, on which products.
HISTORY_DAYS = 180
HISTORY = 42
DEPTHS = [3, 8, 12, 18, 25, 35, 4, 10, 22, 45, 14, 28, 6, 16]
SKUS = ["SEAT-PRO", "SEAT-BASIC", "ONBOARDING", "SUPPORT-GOLD"]


def _history(reps: list[Actor], deciders: dict[int, Actor]) -> None:
    """Requests of the last six months, decided through the services, then moved back to when
    they happened (their steps waited from an hour to a few days, longer higher up)."""
    chance = random.Random(28)  # the same history every time
    now = utcnow()
    for number in range(HISTORY):
        depth = DEPTHS[number % len(DEPTHS)]
        currency = "EUR" if number % 6 == 5 else "USD"
        book = {sku: prices[currency] for sku, _, _, prices, _ in PRODUCTS if currency in prices}
        lines = [
            LineItemInput(
                sku=sku,
                quantity=quantity,
                unit_price=book[sku] * (100 - percent) // 100,
            )
            for sku, quantity, percent in (
                (SKUS[number % 2], 10 + chance.randrange(40), depth),
                (SKUS[2 + number % 2], 1, max(0, depth - chance.randrange(8))),
            )
        ]
        if number % 5 == 2:  # a one-off service: a custom line
            lines.append(
                LineItemInput(
                    description="On-site workshop",
                    quantity=1,
                    unit_list_price=150_000,
                    unit_price=150_000 * (100 - depth // 2) // 100,
                )
            )
        customer = CUSTOMERS[number % len(CUSTOMERS)]
        data = ApprovalCreate(
            title=f"{customer} {'renewal' if number % 3 else 'expansion'}",
            customer=customer,
            currency=currency,
            deal_reference=f"CRM-{20000 + number}",
            justification="Quarter-end deal.",
            line_items=lines,
            submit=True,
        )
        requester = reps[number % len(reps)]
        view = services.create_approval(requester, data)
        approval_id = view.approval.id
        waits: list[timedelta] = []
        if number % 8 == 7 and view.status == ApprovalStatus.PENDING:
            view = services.recall(requester, approval_id)  # taken back, to rework
        for step in view.steps:
            if view.status != ApprovalStatus.PENDING:
                break
            waits.append(timedelta(minutes=chance.randrange(45, 60 * 24 * step.level_rank)))
            decider = deciders[step.level_rank]
            if number % 9 == 4 and step.position == 1:
                view = services.request_changes(decider, approval_id, "Tie it to a longer term.")
            elif number % 7 == 3 and step.position == len(view.steps):
                view = services.reject(decider, approval_id, "Too deep for this account.")
            else:
                view = services.approve(decider, approval_id)
        submitted = now - timedelta(
            days=HISTORY_DAYS * (HISTORY - number) / HISTORY, hours=chance.randrange(8)
        )
        _move_back(approval_id, submitted, waits)


def _move_back(approval_id: str, submitted: datetime, waits: list[timedelta]) -> None:
    """Put an approval's times (and its steps', decisions' and events') where its history
    happened: submitted then, each step decided after its wait."""
    approval = db.session.get(Approval, approval_id)
    moments = [submitted]
    for wait in waits:
        moments.append(moments[-1] + wait)
    approval.created_at = submitted - timedelta(hours=1)
    approval.submitted_at = submitted
    approval.updated_at = moments[-1]
    if approval.decided_at is not None:
        approval.decided_at = moments[-1]
        if approval.valid_until is not None:
            approval.valid_until = moments[-1] + timedelta(days=30)
    for index, step in enumerate(approval.current_steps()):
        step.started_at = moments[index] if index < len(moments) and step.started_at else None
        if step.decided_at is not None:
            step.decided_at = moments[index + 1]
    decisions = db.session.execute(
        select(Decision).where(Decision.approval_id == approval_id).order_by(Decision.id)
    ).scalars()
    for index, decision in enumerate(decisions):
        decision.created_at = moments[min(index + 1, len(moments) - 1)]
    events = db.session.execute(
        select(Event).where(Event.approval_id == approval_id).order_by(Event.id)
    ).scalars()
    times = [approval.created_at, *moments]
    for index, event in enumerate(events):
        event.created_at = times[min(index, len(times) - 1)]
    db.session.commit()


def create_demo_organization(password: str) -> Organization:
    """Create the 'demo' organization with its people, levels and approvals.

    Everyone signs in with ``password``: it is a demo, to try each role's dashboard.
    """
    organization = organizations.create_organization(
        "Demo Inc.",
        slug="demo",
        owner_email="owner@demo.example",
        owner_name="Olivia Owner",
        owner_password=password,
    )
    owner = Actor.for_cli(organization)
    people: dict[str, User] = {"owner@demo.example": owner.user}
    for email, name, role in MEMBERS:
        people[email] = organizations.add_member(
            owner, email=email, name=name, role=role.value, password=password
        )

    def as_(email: str) -> Actor:
        return Actor.for_user(people[email], Surface.CLI)

    admin = as_("admin@demo.example")
    for name, rank, percent, amount_cap, holders in LEVELS:
        level = levels.create_level(
            admin,
            LevelCreate(
                name=name, rank=rank, max_discount_percent=percent, max_discount_amount=amount_cap
            ),
        )
        for holder in holders:
            update = MemberUpdate(approval_level=level.id)
            organizations.update_member(admin, people[holder].id, update)

    for sku, name, description, prices, active in PRODUCTS:
        products.create_product(
            admin,
            ProductCreate(
                sku=sku,
                name=name,
                description=description,
                active=active,
                prices=[{"currency": c, "unit_list_price": p} for c, p in prices.items()],
            ),
        )

    rep, sam = as_("rep@demo.example"), as_("sam@demo.example")
    manager, vp = as_("manager@demo.example"), as_("vp@demo.example")
    _history(
        [rep, sam, as_("nora@demo.example")],
        {1: manager, 2: vp, 3: as_("cfo@demo.example")},
    )

    pilot = _request("Initech pilot", "Initech", 12)
    pilot.line_items.append(  # a one-off item: a custom line, with its list price typed in
        LineItemInput(
            description="On-site kickoff workshop",
            quantity=1,
            unit_list_price=150_000,
            unit_price=150_000,
        )
    )
    services.create_approval(rep, pilot)  # draft

    waiting = services.create_approval(rep, _request("Acme renewal, 3 years", "Acme Corp", 22))
    services.submit(rep, waiting.approval.id)  # pending at the manager
    services.add_comment(rep, waiting.approval.id, "Acme's procurement needs an answer by Friday.")

    at_vp = services.create_approval(
        sam, _request("Globex expansion to 200 seats", "Globex", 25, currency="EUR")
    )
    services.submit(sam, at_vp.approval.id)
    services.approve(manager, at_vp.approval.id, "Fine by me; VP to confirm.")  # pending at VP

    approved = services.create_approval(rep, _request("Umbrella upsell", "Umbrella Corp", 10))
    services.submit(rep, approved.approval.id)
    services.approve(manager, approved.approval.id, "Approved: strategic account.")

    data = _request("Hooli starter pack", "Hooli", 3)
    data.submit = True
    services.create_approval(sam, data)  # auto-approved under the 5 % threshold

    rejected = services.create_approval(sam, _request("Stark one-off deal", "Stark Industries", 45))
    services.submit(sam, rejected.approval.id)
    services.reject(manager, rejected.approval.id, "45 % is far beyond what this deal justifies.")

    changes = services.create_approval(rep, _request("Wayne multi-year", "Wayne Enterprises", 18))
    services.submit(rep, changes.approval.id)
    services.approve(manager, changes.approval.id)
    services.request_changes(
        vp, changes.approval.id, "Tie the discount to a 3-year term, then resubmit."
    )

    # Two waiting at the CFO level, which the owner holds (and so the demo's key).
    for requester, title, customer, percent in (
        (rep, "Initrode enterprise licence", "Initrode", 35),
        (sam, "Massive Dynamic rollout", "Massive Dynamic", 40),
    ):
        at_cfo = services.create_approval(requester, _request(title, customer, percent))
        services.submit(requester, at_cfo.approval.id)
        services.approve(manager, at_cfo.approval.id, "Beyond my level; passing it on.")
        services.approve(vp, at_cfo.approval.id, "Strategic; the CFO decides.")

    canceled = services.create_approval(sam, _request("Cyberdyne trial", "Cyberdyne", 8))
    services.cancel(sam, canceled.approval.id, "The customer chose to wait until next quarter.")

    expired = services.create_approval(rep, _request("Soylent Q1 promo", "Soylent", 4))
    services.submit(rep, expired.approval.id)
    # An approval from last quarter whose price has lapsed.
    row = db.session.get(Approval, expired.approval.id)
    row.valid_until = utcnow() - timedelta(days=1)
    db.session.commit()
    services.expire_approvals()
    return organization


def awaiting_the_owner(organization: Organization) -> tuple[User, str | None, list[ApprovalView]]:
    """The owner (whom an API key acts as), the name of their approval level, and the
    approvals waiting for their decision."""
    owner = Actor.for_cli(organization)
    level = owner.user.approval_level_id
    name = db.session.get(ApprovalLevel, level).name if level else None
    query = ApprovalListQuery(awaiting_decision_by=owner.user.id)
    waiting, _ = queries.list_approvals(owner, query, PageRequest(limit=100))
    return owner.user, name, waiting
