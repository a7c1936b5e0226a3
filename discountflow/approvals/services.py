"""Approvals: the state machine and who may do what — the rules every surface shares.

Every function takes an explicit :class:`~discountflow.actors.Actor`, refuses a read-only one
before anything else (``writing``), scopes every query to the actor's organization (another
organization's id is simply not found), owns its transaction, and writes the decision and
audit event rows of a state change in the same commit.

Four eyes: nobody who created, edited or submitted the current round of an approval decides
any of its steps (a key counts as the owner it acts for); the requester never decides their
own request. ``allowed_actions`` tells surfaces what the actions below will accept.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, update

from ..actors import Actor, writing
from ..audit.services import EventLog
from ..currencies import CURRENCIES, format_major_units
from ..database import begin_write, new_id, rfc3339, utcnow
from ..errors import InvalidParameter, InvalidStateTransition, NotFound, PermissionDenied
from ..extensions import db
from ..organizations.models import CustomLineItems, User
from ..organizations.services import REMOVED, get_member, get_organization
from ..products.services import products_for_lines
from . import routing
from .levels import levels_of
from .models import (
    EDITABLE,
    OPEN,
    Approval,
    ApprovalStatus,
    Comment,
    Decision,
    DecisionType,
    LineItem,
    Participant,
    Step,
    StepStatus,
    effective_status,
)
from .queries import ApprovalView, load, may_decide, view_of
from .schemas import ApprovalCreate, ApprovalUpdate, LineItemInput

# --- who may do what ---------------------------------------------------------------------------


def _is_requester_or_manager(actor: Actor, approval: Any) -> bool:
    return actor.manages_organization or approval.requested_by_id == actor.user.id


def _require_requester_or_manager(actor: Actor, approval: Approval, what: str) -> None:
    if not _is_requester_or_manager(actor, approval):
        raise PermissionDenied(
            f"Only the requester, admins and the owner may {what} this approval."
        )


FOUR_EYES = (
    "Four eyes: whoever created, edited or submitted this round of the approval cannot decide "
    "it (an API key counts as the owner it acts for). Another approver must decide."
)


def decision_refusal(actor: Actor, approval: Any, step: Any) -> str | None:
    """Why the actor may not decide the approval's active step (``None``: they may), decided
    by the four-eyes rule (``queries.decidable_by``) and explained here."""
    user = actor.user
    if may_decide(user, approval.id):
        return None
    if user.id == approval.requested_by_id:
        return "The requester cannot decide their own approval."
    if user.approval_level_id is None or user.approval_level_id != step.approval_level_id:
        return f"Only an approver at the level {step.level_name!r} may decide this step."
    return FOUR_EYES


REQUESTER_REMOVED = (
    "This approval's requester was removed: nobody asks on their behalf. "
    "Cancel it, or create a new request."
)


def requester_removed(approval: Any) -> bool:
    """Whether the member who asked for the approval was removed since (they left)."""
    requester = db.session.get(User, approval.requested_by_id)
    return requester is not None and requester.removed_at is not None


def allowed_actions(actor: Actor, view: ApprovalView) -> frozenset[str]:
    """The actions the actor may take on an approval now, by the rules the actions enforce.

    Surfaces show only these; the actions check again when they run.
    """
    if actor.read_only:
        return frozenset()
    approval, status = view.approval, view.status
    allowed = set()
    if _is_requester_or_manager(actor, approval):
        if status in EDITABLE:
            allowed.add("edit")
            if not requester_removed(approval):
                allowed.add("submit")
        if status == ApprovalStatus.DRAFT:
            allowed.add("delete")
        if status == ApprovalStatus.PENDING:
            allowed.add("recall")
        if status in OPEN:
            allowed.add("cancel")
    if status == ApprovalStatus.PENDING:
        step = next((s for s in view.steps if s.status == StepStatus.PENDING), None)
        if step is not None:
            refusal = decision_refusal(actor, approval, step)
            if refusal is None:
                allowed |= {"approve", "reject", "request_changes"}
    return frozenset(allowed)


def _refuse_transition(approval: Approval, action: str, now: datetime) -> None:
    status = effective_status(approval.status, approval.valid_until, now)
    raise InvalidStateTransition(f"You cannot {action} an approval whose status is {status}.")


def _change(
    actor: Actor, approval_id: str, allowed: Collection[str], action: str
) -> tuple[Approval, datetime]:
    """Lock an approval for a change its requester (or an admin, the owner) makes.

    Refuses with 409 outside the ``allowed`` statuses and 403 for anyone else.
    """
    writing(actor)
    now = utcnow()
    approval = load(actor, approval_id, for_update=True)
    if approval.status not in allowed:
        _refuse_transition(approval, action, now)
    _require_requester_or_manager(actor, approval, action)
    return approval, now


def _takes_part(approval: Approval, actor: Actor) -> None:
    """Count the actor among who created, edited or submitted the current round."""
    user_id = actor.person_id
    if all(participant.user_id != user_id for participant in approval.participants):
        approval.participants.append(Participant(user_id=user_id))


def _new_round(approval: Approval) -> None:
    """The round ended (changes requested, recalled): whoever edits and submits next counts."""
    approval.participants.clear()


# --- pricing: list prices come from the price book ----------------------------------------------


@dataclass(frozen=True)
class PricedLine:
    """A line item as it is saved: its list price taken from the book (or typed, if custom)."""

    product_id: str | None
    custom: bool
    sku: str
    description: str
    quantity: int
    unit_list_price: int
    unit_price: int


def _line_refusal(number: int, message: str, param: str) -> InvalidParameter:
    return InvalidParameter(f"Line {number}: {message}", param=f"line_items[{number - 1}].{param}")


def price_lines(
    actor: Actor, currency: str, items: list[LineItemInput], *, lock: bool = True
) -> list[PricedLine]:
    """Price line items from the price book, in ``currency``, as of now.

    A line naming a product (``product`` or ``sku``) takes the product's list price in that
    currency; a typed list price there is refused, as is an archived product or one without a
    price in the currency. A line naming none is a custom line, only where the organization
    allows them. Every refusal names its line.
    """
    ids = {item.product for item in items if item.product is not None}
    skus = {item.sku for item in items if item.sku}
    found = products_for_lines(actor, ids, skus, lock=lock)
    by_id = {product.id: product for product in found}
    by_sku = {product.sku: product for product in found}
    custom_allowed = None
    lines = []
    for number, item in enumerate(items, start=1):
        if not item.names_a_product:
            if custom_allowed is None:
                custom_allowed = custom_lines_allowed(actor)
            lines.append(_custom_line(number, item, custom_allowed))
            continue
        product = None
        if item.product is not None:
            product = by_id.get(item.product)
            if product is None:
                message = f"the price book has no product {item.product!r}."
                raise _line_refusal(number, message, "product")
        if item.sku:
            named = by_sku.get(item.sku)
            if named is None:
                message = (
                    f"the price book has no product with SKU {item.sku!r} (a custom line "
                    "names no SKU)."
                )
                raise _line_refusal(number, message, "sku")
            if product is not None and named.id != product.id:
                message = f"{item.product!r} and SKU {item.sku!r} are two products: send one."
                raise _line_refusal(number, message, "sku")
            product = named
        if item.unit_list_price is not None:
            message = (
                f"the list price of {product.sku} comes from the price book: leave out "
                "unit_list_price."
            )
            raise _line_refusal(number, message, "unit_list_price")
        if not product.active:
            message = f"{product.sku} is archived in the price book: choose an active product."
            raise _line_refusal(number, message, "product" if item.product else "sku")
        list_price = product.price_in(currency)
        if list_price is None:
            message = f"the price book has no {currency} price for {product.sku}."
            raise _line_refusal(number, message, "product" if item.product else "sku")
        if item.unit_price > list_price:
            message = (
                f"the unit price asked, {format_major_units(item.unit_price, currency)} "
                f"{currency}, is above the list price of {product.sku}, "
                f"{format_major_units(list_price, currency)} {currency}."
            )
            raise _line_refusal(number, message, "unit_price")
        lines.append(
            PricedLine(
                product_id=product.id,
                custom=False,
                sku=product.sku,
                description=item.description or product.name,
                quantity=item.quantity,
                unit_list_price=list_price,
                unit_price=item.unit_price,
            )
        )
    return lines


def _custom_line(number: int, item: LineItemInput, allowed: bool) -> PricedLine:
    if not allowed:
        message = (
            "this organization takes every list price from the price book: name a product "
            "(product or sku)."
        )
        raise _line_refusal(number, message, "product")
    if item.description is None:
        message = "a custom line needs a description (or name a product of the price book)."
        raise _line_refusal(number, message, "description")
    if item.unit_list_price is None:
        message = "a custom line needs its unit_list_price (or name a product of the price book)."
        raise _line_refusal(number, message, "unit_list_price")
    return PricedLine(
        product_id=None,
        custom=True,
        sku="",
        description=item.description,
        quantity=item.quantity,
        unit_list_price=item.unit_list_price,
        unit_price=item.unit_price,
    )


def check_lines_still_priced(
    actor: Actor, approval: Any, organization: Any, *, lock: bool = False
) -> None:
    """Refuse to send on lines the book no longer stands behind: a custom line where the
    organization now forbids them, a product since archived, or a list price the book has
    changed since the line was saved (history keeps the frozen price; a submit measures the
    discount against today's book). Saving the line items again prices them again."""
    lines = list(approval.line_items)
    if organization.custom_line_items != CustomLineItems.ALLOWED:
        custom = next((item for item in lines if item.custom), None)
        if custom is not None:
            message = (
                "is a custom line, and this organization takes every list price from the price "
                "book: edit the line items first."
            )
            raise _line_refusal(custom.position, message, "product")
    wanted = {item.product_id for item in lines if item.product_id is not None}
    products = {product.id: product for product in products_for_lines(actor, wanted, (), lock=lock)}
    for item in lines:
        if item.product_id is None:
            continue
        product = products.get(item.product_id)
        if product is None or not product.active:
            message = f"{item.sku} is no longer an active product: edit the line items."
            raise _line_refusal(item.position, message, "product")
        now_listed = product.price_in(approval.currency)
        if now_listed != item.unit_list_price:
            currency = approval.currency
            was = format_major_units(item.unit_list_price, currency)
            listed = (
                f"now {format_major_units(now_listed, currency)} {currency}"
                if now_listed is not None
                else f"no longer priced in {currency}"
            )
            message = (
                f"the price book's list price of {product.sku} is {listed} (the line took "
                f"{was} {currency} when it was saved): save the line items again."
            )
            raise _line_refusal(item.position, message, "unit_list_price")


def custom_lines_allowed(actor: Actor) -> bool:
    """Whether the actor's organization allows custom line items (a typed list price)."""
    return get_organization(actor).custom_line_items == CustomLineItems.ALLOWED


# --- routing -----------------------------------------------------------------------------------


def _route(organization_id: str, threshold_bps: int, approval: Any) -> routing.Route:
    return routing.route(approval.line_items, approval, threshold_bps, levels_of(organization_id))


def preview(actor: Actor, approval_id: str) -> tuple[Approval, routing.Route]:
    """Return the route a submit of this approval would take now."""
    approval = load(actor, approval_id)
    if not approval.line_items:
        raise InvalidParameter(
            "Add at least one line item to see the route of this approval.", param="line_items"
        )
    organization = get_organization(actor)
    if approval.status in EDITABLE:  # what a submit would refuse, the preview says
        check_lines_still_priced(actor, approval, organization)
    threshold = organization.auto_approve_threshold_bps
    return approval, _route(actor.organization_id, threshold, approval)


def preview_route(
    actor: Actor, currency: str, items: list[LineItemInput]
) -> tuple[list[PricedLine], routing.Route]:
    """Return the lines, priced from the book, and the route a request with these line items
    would take, before it is saved."""
    if not items:
        raise InvalidParameter("Add at least one line item.", param="line_items")
    if currency not in CURRENCIES:
        raise InvalidParameter("Choose the request's currency.", param="currency")
    lines = price_lines(actor, currency, items, lock=False)
    draft = SimpleNamespace(
        line_items=lines,
        currency=currency,
        list_amount=sum(line.quantity * line.unit_list_price for line in lines),
        amount=sum(line.quantity * line.unit_price for line in lines),
    )
    threshold = get_organization(actor).auto_approve_threshold_bps
    return lines, _route(actor.organization_id, threshold, draft)


# --- drafting ----------------------------------------------------------------------------------


def _set_line_items(approval: Approval, lines: list[PricedLine]) -> None:
    approval.line_items = [
        LineItem(
            position=position,
            product_id=line.product_id,
            custom=line.custom,
            sku=line.sku,
            description=line.description,
            quantity=line.quantity,
            unit_list_price=line.unit_list_price,
            unit_price=line.unit_price,
        )
        for position, line in enumerate(lines, start=1)
    ]
    approval.list_amount = sum(line.quantity * line.unit_list_price for line in lines)
    approval.amount = sum(line.quantity * line.unit_price for line in lines)
    approval.max_line_discount_bps = routing.to_bps(*routing.largest_discount(lines))


def _requester(actor: Actor, requested_by: str | None) -> User:
    if requested_by is None or requested_by == actor.user.id:
        return actor.user
    if not actor.manages_organization:
        raise PermissionDenied("Only admins and the owner may ask on another member's behalf.")
    try:
        requester = get_member(actor, requested_by)
    except NotFound as error:
        raise InvalidParameter(error.message, param="requested_by") from error
    if requester.removed_at is not None:
        raise InvalidParameter(REMOVED, param="requested_by")
    return requester


def create_approval(actor: Actor, data: ApprovalCreate) -> ApprovalView:
    """Create a draft (and submit it at once when ``data.submit``)."""
    writing(actor)
    now = utcnow()
    requester = _requester(actor, data.requested_by)
    lines = price_lines(actor, data.currency, data.line_items)
    approval = Approval(
        id=new_id("apr"),
        organization_id=actor.organization_id,
        requested_by_id=requester.id,
        title=data.title,
        customer=data.customer,
        deal_reference=data.deal_reference,
        currency=data.currency,
        justification=data.justification,
        metadata_=dict(data.metadata),
        created_at=now,
        updated_at=now,
    )
    _set_line_items(approval, lines)
    db.session.add(approval)
    _takes_part(approval, actor)
    events = EventLog(actor, now)
    events.add("approval.created", approval_id=approval.id, requested_by=requester.id)
    if data.submit:
        _submit(actor, approval, events)
    db.session.commit()
    return view_of(approval, now)


def update_approval(actor: Actor, approval_id: str, data: ApprovalUpdate) -> ApprovalView:
    """Change a draft or an approval sent back for changes; line items are replaced whole."""
    approval, now = _change(actor, approval_id, EDITABLE, "edit")
    _update(actor, approval, data, EventLog(actor, now))
    db.session.commit()
    return view_of(approval, now)


def _update(actor: Actor, approval: Approval, data: ApprovalUpdate, events: EventLog) -> None:
    changed = sorted(data.model_fields_set)
    currency = data.currency if "currency" in changed else approval.currency
    if currency != approval.currency and "line_items" not in changed and approval.line_items:
        raise InvalidParameter(
            "The line items are priced in the approval's currency: send line_items with a new "
            "currency, to be priced in it.",
            param="line_items",
        )
    for name in changed:
        if name == "line_items":
            _set_line_items(approval, price_lines(actor, currency, data.line_items))
        elif name == "metadata":
            approval.metadata_ = dict(data.metadata)
        else:
            setattr(approval, name, getattr(data, name))
    approval.updated_at = events.now
    _takes_part(approval, actor)
    events.add("approval.updated", approval_id=approval.id, fields=changed)


def update_and_submit(actor: Actor, approval_id: str, data: ApprovalUpdate) -> ApprovalView:
    """Change an approval and submit it, in one transaction: a refused submit keeps no edit."""
    approval, now = _change(actor, approval_id, EDITABLE, "edit")
    events = EventLog(actor, now)
    _update(actor, approval, data, events)
    _submit(actor, approval, events)
    db.session.commit()
    return view_of(approval, now)


def delete_approval(actor: Actor, approval_id: str) -> str:
    """Delete a draft for good (its events stay in the audit trail)."""
    approval, now = _change(actor, approval_id, {ApprovalStatus.DRAFT}, "delete")
    EventLog(actor, now).add("approval.deleted", approval_id=approval.id, title=approval.title)
    db.session.delete(approval)
    db.session.commit()
    return approval_id


# --- the state machine -------------------------------------------------------------------------


def _submit(actor: Actor, approval: Approval, events: EventLog) -> None:
    now = events.now
    if requester_removed(approval):  # as create_approval refuses them as requested_by
        raise InvalidStateTransition(REQUESTER_REMOVED)
    if not approval.line_items:
        raise InvalidParameter("Add at least one line item before submitting.", param="line_items")
    organization = get_organization(actor)
    check_lines_still_priced(actor, approval, organization, lock=True)
    route = _route(organization.id, organization.auto_approve_threshold_bps, approval)
    approval.round += 1
    approval.submitted_at = now
    approval.updated_at = now
    _takes_part(approval, actor)
    events.add("approval.submitted", approval_id=approval.id, round=approval.round)
    if route.auto_approve:
        system = Actor.system(approval.organization_id)
        approval.status = ApprovalStatus.APPROVED.value
        approval.required_level_id = approval.awaiting_level_id = None
        approval.decided_at = now
        approval.valid_until = now + timedelta(days=organization.default_validity_days)
        db.session.add(
            Decision(
                organization_id=approval.organization_id,
                approval_id=approval.id,
                type=DecisionType.AUTO_APPROVE.value,
                comment="",
                created_at=now,
                **system.recorded_as(),
            )
        )
        events.add(
            "approval.approved",
            approval_id=approval.id,
            by=system,
            auto=True,
            valid_until=rfc3339(approval.valid_until),
        )
        return
    approval.status = ApprovalStatus.PENDING.value
    approval.required_level_id = route.required.id
    approval.awaiting_level_id = route.levels[0].id
    approval.decided_at = approval.valid_until = None
    for position, level in enumerate(route.levels, start=1):
        approval.steps.append(
            Step(
                round=approval.round,
                position=position,
                approval_level_id=level.id,
                level_name=level.name,
                level_rank=level.rank,
                status=(StepStatus.PENDING if position == 1 else StepStatus.WAITING).value,
                started_at=now if position == 1 else None,
            )
        )


def submit(actor: Actor, approval_id: str) -> ApprovalView:
    """Send a draft (or a changed approval) for approval along its route, frozen now."""
    approval, now = _change(actor, approval_id, EDITABLE, "submit")
    _submit(actor, approval, EventLog(actor, now))
    db.session.commit()
    return view_of(approval, now)


def _close_round(approval: Approval, status: StepStatus) -> None:
    """End the open steps of the current round (recall, cancel, reject, request changes)."""
    for step in approval.current_steps():
        if step.status in (StepStatus.PENDING, StepStatus.WAITING):
            step.status = status.value
    approval.awaiting_level_id = None


_VERBS = {"approve": "approve", "reject": "reject", "request_changes": "request changes on"}


def _decide(actor: Actor, approval_id: str, kind: DecisionType, comment: str | None):
    writing(actor)
    now = utcnow()
    approval = load(actor, approval_id, for_update=True)
    if approval.status != ApprovalStatus.PENDING:
        _refuse_transition(approval, _VERBS[kind.value], now)
    step = next(s for s in approval.current_steps() if s.status == StepStatus.PENDING)
    refusal = decision_refusal(actor, approval, step)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if kind is not DecisionType.APPROVE and not comment:
        raise InvalidParameter("A comment is required.", param="comment")
    step.decided_by_id = actor.user.id
    step.decided_at = now
    db.session.add(
        Decision(
            organization_id=approval.organization_id,
            approval_id=approval.id,
            step_id=step.id,
            type=kind.value,
            comment=comment or "",
            created_at=now,
            **actor.recorded_as(),
        )
    )
    events = EventLog(actor, now)
    approval.updated_at = now
    if kind is DecisionType.APPROVE:
        step.status = StepStatus.APPROVED.value
        upcoming = [s for s in approval.current_steps() if s.status == StepStatus.WAITING]
        events.add("approval.step_approved", approval_id=approval.id, step=step.id)
        if upcoming:
            upcoming[0].status = StepStatus.PENDING.value
            upcoming[0].started_at = now
            approval.awaiting_level_id = upcoming[0].approval_level_id
        else:
            validity = get_organization(actor).default_validity_days
            approval.status = ApprovalStatus.APPROVED.value
            approval.awaiting_level_id = None
            approval.decided_at = now
            approval.valid_until = now + timedelta(days=validity)
            events.add(
                "approval.approved",
                approval_id=approval.id,
                valid_until=rfc3339(approval.valid_until),
            )
    elif kind is DecisionType.REJECT:
        step.status = StepStatus.REJECTED.value
        _close_round(approval, StepStatus.CANCELED)
        approval.status = ApprovalStatus.REJECTED.value
        approval.decided_at = now
        events.add("approval.rejected", approval_id=approval.id, step=step.id)
    else:
        step.status = StepStatus.CHANGES_REQUESTED.value
        _close_round(approval, StepStatus.CANCELED)
        _new_round(approval)
        approval.status = ApprovalStatus.CHANGES_REQUESTED.value
        events.add("approval.changes_requested", approval_id=approval.id, step=step.id)
    db.session.commit()
    return view_of(approval, now)


def approve(actor: Actor, approval_id: str, comment: str | None = None) -> ApprovalView:
    """Approve the active step; the last step approves the whole approval."""
    return _decide(actor, approval_id, DecisionType.APPROVE, comment)


def reject(actor: Actor, approval_id: str, comment: str) -> ApprovalView:
    """Reject the approval as a whole (a comment is required)."""
    return _decide(actor, approval_id, DecisionType.REJECT, comment)


def request_changes(actor: Actor, approval_id: str, comment: str) -> ApprovalView:
    """Send the approval back to its requester for changes (a comment is required)."""
    return _decide(actor, approval_id, DecisionType.REQUEST_CHANGES, comment)


def recall(actor: Actor, approval_id: str) -> ApprovalView:
    """Take a pending approval back to draft."""
    approval, now = _change(actor, approval_id, {ApprovalStatus.PENDING}, "recall")
    _close_round(approval, StepStatus.CANCELED)
    _new_round(approval)
    approval.status = ApprovalStatus.DRAFT.value
    approval.required_level_id = None
    approval.updated_at = now
    EventLog(actor, now).add("approval.recalled", approval_id=approval.id)
    db.session.commit()
    return view_of(approval, now)


def cancel(actor: Actor, approval_id: str, comment: str | None = None) -> ApprovalView:
    """Cancel an approval that is not decided yet."""
    approval, now = _change(actor, approval_id, OPEN, "cancel")
    _close_round(approval, StepStatus.CANCELED)
    approval.status = ApprovalStatus.CANCELED.value
    approval.updated_at = now
    EventLog(actor, now).add("approval.canceled", approval_id=approval.id, comment=comment or "")
    db.session.commit()
    return view_of(approval, now)


def expire_approvals(now: datetime | None = None) -> int:
    """Mark approved prices past their validity as expired, with an event each; return how many.

    Readers already see such approvals as expired; this makes it permanent (run it from cron).
    """
    begin_write()
    now = now or utcnow()
    due = list(
        db.session.execute(
            select(Approval.id, Approval.organization_id).where(
                Approval.status == ApprovalStatus.APPROVED, Approval.valid_until <= now
            )
        )
    )
    for approval_id, organization_id in due:
        EventLog(Actor.system(organization_id), now).add(
            "approval.expired", approval_id=approval_id
        )
    if due:
        db.session.execute(
            update(Approval)
            .where(Approval.id.in_([row.id for row in due]))
            .values(status=ApprovalStatus.EXPIRED.value, updated_at=now)
        )
    db.session.commit()
    return len(due)


# --- comments ----------------------------------------------------------------------------------


def add_comment(actor: Actor, approval_id: str, body: str) -> Comment:
    """Comment on an approval the actor can see."""
    writing(actor)
    now = utcnow()
    approval = load(actor, approval_id, for_update=True)
    comment = Comment(
        id=new_id("cmt"),
        organization_id=approval.organization_id,
        approval_id=approval.id,
        body=body,
        created_at=now,
        **actor.recorded_as(),
    )
    db.session.add(comment)
    EventLog(actor, now).add("comment.created", approval_id=approval.id, comment=comment.id)
    db.session.commit()
    return comment
