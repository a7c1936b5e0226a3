"""An organization to test approvals in: people, three levels and helpers to act as each."""

from __future__ import annotations

from dataclasses import dataclass, field

from discountflow.actors import Actor, Surface
from discountflow.approvals import levels, services
from discountflow.approvals.schemas import ApprovalCreate, LevelCreate
from discountflow.extensions import db
from discountflow.organizations import services as organizations
from discountflow.organizations.models import User
from discountflow.organizations.schemas import MemberUpdate
from discountflow.products import services as products
from discountflow.products.schemas import ProductCreate

from .conftest import add_member, create_org, generate_key

# name, rank, largest discount (percent), holder
LEVELS = [("Manager", 1, 15), ("VP", 2, 30), ("CFO", 3, 50)]
# The price book: SEAT, listed at 10,000 minor units a unit in these currencies; LICENSE, at
# 1,200.00 in USD and EUR (the dashboard's examples).
SKU = "SEAT"
LIST_PRICE = 10_000
BOOK_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
LICENSE = "LICENSE"


@dataclass
class World:
    app: object
    organization_id: str
    people: dict[str, str] = field(default_factory=dict)  # name → user id
    levels: dict[str, str] = field(default_factory=dict)  # level name → level id
    products: dict[str, str] = field(default_factory=dict)  # SKU → product id
    key: str = ""
    read_only_key: str = ""

    def actor(self, name: str) -> Actor:
        """An actor for a person, acting from the dashboard (call inside an app context)."""
        return Actor.for_user(db.session.get(User, self.people[name]), Surface.DASHBOARD)


def build_world(app, slug: str = "acme") -> World:
    organization_id, owner_id = create_org(app, slug)
    world = World(app, organization_id, {"owner": owner_id})
    world.people["admin"] = add_member(app, organization_id, f"admin@{slug}.example", "admin")
    for name in ("rep", "rep2", "manager", "manager2", "vp", "cfo"):
        world.people[name] = add_member(app, organization_id, f"{name}@{slug}.example")
    with app.app_context():
        admin = world.actor("admin")
        holders = {"Manager": ("manager", "manager2"), "VP": ("vp",), "CFO": ("cfo",)}
        for name, rank, percent in LEVELS:
            level = levels.create_level(
                admin, LevelCreate(name=name, rank=rank, max_discount_percent=percent)
            )
            world.levels[name] = level.id
            for holder in holders[name]:
                organizations.update_member(
                    admin, world.people[holder], MemberUpdate(approval_level=level.id)
                )
        seat = products.create_product(
            admin,
            ProductCreate(
                sku=SKU,
                name="Seat, annual",
                prices=[{"currency": c, "unit_list_price": LIST_PRICE} for c in BOOK_CURRENCIES],
            ),
        )
        license_ = products.create_product(
            admin,
            ProductCreate(
                sku=LICENSE,
                name="License, annual",
                prices=[{"currency": c, "unit_list_price": 120_000} for c in ("USD", "EUR")],
            ),
        )
        world.products = {SKU: seat.id, LICENSE: license_.id}
    world.key = generate_key(app, owner_id)
    world.read_only_key = generate_key(app, owner_id, read_only=True)
    return world


def set_level(world: World, member_id: str, level_id: str | None) -> None:
    """Make a member an approver at a level (or none), as the world's admin."""
    with world.app.app_context():
        update = MemberUpdate(approval_level=level_id)
        organizations.update_member(world.actor("admin"), member_id, update)


def request_body(*discounts: float, currency: str = "USD", **fields) -> dict:
    """An approval body with one line per discount percent, each of the price book's SEAT
    (listed at 10,000 minor units)."""
    body = {
        "title": "Deal",
        "customer": "Initech",
        "currency": currency,
        "line_items": [
            {
                "sku": SKU,
                "description": f"Line {n}",
                "quantity": 2,
                "unit_price": round(LIST_PRICE * (100 - discount) / 100),
            }
            for n, discount in enumerate(discounts, start=1)
        ],
    }
    body.update(fields)
    return body


def create(world: World, who: str, *discounts: float, submit: bool = False, **fields):
    """Create an approval as ``who`` through the service; return its id."""
    with world.app.app_context():
        data = ApprovalCreate.model_validate(request_body(*discounts, submit=submit, **fields))
        return services.create_approval(world.actor(who), data).approval.id


def act(world: World, who: str, action: str, approval_id: str, *args):
    """Run a service action as ``who``; return the approval's status afterwards."""
    with world.app.app_context():
        view = getattr(services, action)(world.actor(who), approval_id, *args)
        return view.status
