"""Approvals: routing, the state machine and who may do what — the rules every surface shares.

Every function takes an explicit :class:`~discountflow.auth.services.Actor`, scopes every query
to the actor's organization (another organization's id is simply not found), owns its
transaction, and writes the decision and event rows of a state change in the same commit.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, delete, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..auth.models import Organization, User
from ..auth.services import Actor, get_member, get_organization
from ..database import begin_write, mark_changed, new_id, rfc3339, utcnow
from ..errors import (
    Conflict,
    InvalidParameter,
    InvalidStateTransition,
    NotFound,
    PermissionDenied,
)
from ..extensions import db
from ..pagination import PageRequest, paginate
from ..schemas import percent_of, to_bps
from . import pages
from .models import (
    EDITABLE,
    OPEN,
    Approval,
    ApprovalLevel,
    ApprovalStatus,
    Comment,
    Decision,
    DecisionType,
    Event,
    LineItem,
    Step,
    StepStatus,
    effective_status,
)
from .page_cache import PageCache
from .schemas import (
    ApprovalCreate,
    ApprovalListQuery,
    ApprovalUpdate,
    LevelCreate,
    LevelUpdate,
    LineItemInput,
    SettingsUpdate,
)

SYSTEM = {"actor_type": "system", "actor_user_id": None, "api_key_id": None, "surface": "system"}


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalView:
    """An approval with what its page shows: line items and the steps of its current round.

    ``approval``, ``line_items`` and ``steps`` are ORM objects or plain rows with the same
    attribute names (lists read rows straight from the database, which is much cheaper).
    """

    approval: Any
    line_items: list[Any]
    steps: list[Any]
    now: datetime = field(default_factory=utcnow)

    @property
    def status(self) -> str:
        return effective_status(self.approval.status, self.approval.valid_until, self.now)


# Lists read plain rows through Core (much cheaper than ORM objects for a page of twenty
# approvals with their line items and steps). Rows carry the ORM attribute names, so one set
# of shaping functions serves rows and objects alike.
_approvals, _line_items, _steps = Approval.__table__.c, LineItem.__table__.c, Step.__table__.c
_APPROVAL_COLUMNS = [
    column.label("metadata_") if column.key == "metadata" else column for column in _approvals
]
_LINE_ITEMS_OF = (
    select(*_line_items)
    .where(_line_items.approval_id.in_(bindparam("ids", expanding=True)))
    .order_by(_line_items.approval_id, _line_items.position)
)
_STEPS_OF = (
    select(*_steps)
    .where(_steps.approval_id.in_(bindparam("ids", expanding=True)))
    .order_by(_steps.approval_id, _steps.round, _steps.position)
)


def _visible_approvals(actor: Actor):
    """The condition for the approvals ``actor`` may see (404 for the others)."""
    scope = _approvals.organization_id == actor.organization_id
    if actor.sees_all_approvals:
        return scope
    return and_(scope, _approvals.requested_by_id == actor.user.id)


def _views_of(rows: list[Any], now: datetime) -> list[ApprovalView]:
    """Attach line items and current steps to approval rows, two queries for the whole page."""
    if not rows:
        return []
    connection = db.session.connection()
    items: dict[str, list[Any]] = {row.id: [] for row in rows}
    for item in connection.execute(_LINE_ITEMS_OF, {"ids": list(items)}):
        items[item.approval_id].append(item)
    steps: dict[str, list[Any]] = {row.id: [] for row in rows}
    rounds = {row.id: row.round for row in rows if row.round}
    if rounds:
        for step in connection.execute(_STEPS_OF, {"ids": list(rounds)}):
            if step.round == rounds[step.approval_id]:
                steps[step.approval_id].append(step)
    return [ApprovalView(row, items[row.id], steps[row.id], now) for row in rows]


def _status_condition(statuses: list[str], now: datetime):
    """Filter by the status readers see: approved past its validity counts as expired."""
    status, valid_until = _approvals.status, _approvals.valid_until
    still_valid = or_(valid_until.is_(None), valid_until > now)
    conditions = []
    for wanted in set(statuses):
        if wanted == ApprovalStatus.APPROVED:
            conditions.append(and_(status == wanted, still_valid))
        elif wanted == ApprovalStatus.EXPIRED:
            conditions.append(status == wanted)
            conditions.append(and_(status == ApprovalStatus.APPROVED, valid_until <= now))
        else:
            conditions.append(status == wanted)
    return or_(*conditions)


def _approvals_page_statement(actor: Actor, query: ApprovalListQuery, now: datetime, *columns):
    """Select ``columns`` of the approvals the actor may see, filtered (not yet paginated)."""
    statement = select(*columns).select_from(Approval.__table__).where(_visible_approvals(actor))
    if query.status:
        statement = statement.where(_status_condition(query.status, now))
    if query.requested_by is not None:
        statement = statement.where(_approvals.requested_by_id == query.requested_by)
    if query.awaiting_decision_by is not None:
        approver = db.session.execute(
            select(User.id, User.approval_level_id).where(
                User.id == query.awaiting_decision_by,
                User.organization_id == actor.organization_id,
            )
        ).one_or_none()
        level_id = approver.approval_level_id if approver is not None else None
        statement = statement.where(
            _approvals.status == ApprovalStatus.PENDING,
            # not an approver (or not a member): nothing awaits their decision
            _approvals.awaiting_level_id == level_id if level_id is not None else false(),
            _approvals.requested_by_id != query.awaiting_decision_by,
        )
    if query.customer:
        pattern = query.customer.lower().replace("\\", "\\\\").replace("%", "\\%")
        pattern = pattern.replace("_", "\\_")
        statement = statement.where(
            func.lower(_approvals.customer).like(f"%{pattern}%", escape="\\")
        )
    if query.created_gte is not None:
        statement = statement.where(_approvals.created_at >= query.created_gte)
    if query.created_lte is not None:
        statement = statement.where(_approvals.created_at <= query.created_lte)
    return statement


def list_approvals(
    actor: Actor, query: ApprovalListQuery, page: PageRequest
) -> tuple[list[ApprovalView], bool]:
    """Return one page of the approvals the actor may see, newest first, filtered."""
    now = utcnow()
    statement = _approvals_page_statement(actor, query, now, *_APPROVAL_COLUMNS)
    rows, has_more = paginate(statement, Approval.__table__, page, scope=_visible_approvals(actor))
    return _views_of(rows, now), has_more


def lists_render_in_database() -> bool:
    """Whether the database renders pages of approvals as JSON itself (SQLite: ``pages.py``)."""
    return db.engine.dialect.name == "sqlite"


_NEXT_EXPIRY = select(func.min(_approvals.valid_until)).where(
    _approvals.organization_id == bindparam("organization_id"),
    _approvals.status == ApprovalStatus.APPROVED.value,
    _approvals.valid_until > bindparam("now", type_=Approval.__table__.c.valid_until.type),
)


def approvals_page_json(actor: Actor, query: ApprovalListQuery, page: PageRequest) -> str:
    """The JSON body of ``list_approvals``'s page, rendered by the database (``pages.py``).

    The process remembers the page while it is still what the database would give
    (``page_cache.py``): a poll of an unchanged organization reads nothing.
    """
    now = utcnow()
    if db.session().in_transaction():
        db.session.commit()  # the page's snapshot must be taken after the revision is read
    revision = current_app.extensions["discountflow.organization_revisions"].current(
        actor.organization_id
    )
    cache: PageCache = current_app.extensions["discountflow.page_cache"]
    key = (
        actor.organization_id,
        None if actor.sees_all_approvals else actor.user.id,
        query.model_dump_json(),
    )
    if revision is not None and (body := cache.get(key, revision, now)) is not None:
        return body
    statement = _approvals_page_statement(actor, query, now, _approvals.id)
    rows, has_more = paginate(statement, Approval.__table__, page, scope=_visible_approvals(actor))
    data = ",".join(pages.render(db.session.connection(), [row.id for row in rows], now))
    body = f'{{"object":"list","data":[{data}],"has_more":{"true" if has_more else "false"}}}'
    if revision is not None and cache.keeps(body):
        next_expiry = db.session.execute(
            _NEXT_EXPIRY, {"organization_id": actor.organization_id, "now": now}
        ).scalar()
        cache.put(key, revision, next_expiry, body)
    return body


def _load(actor: Actor, approval_id: str, *, for_update: bool = False) -> Approval:
    statement = select(Approval).where(Approval.id == approval_id, _visible_approvals(actor))
    if for_update:
        statement = statement.with_for_update()
    approval = db.session.execute(statement).scalar_one_or_none()
    if approval is None:
        raise NotFound(f"No such approval: {approval_id!r}.", param="id")
    return approval


def _view(approval: Approval, now: datetime | None = None) -> ApprovalView:
    return ApprovalView(
        approval, list(approval.line_items), approval.current_steps(), now or utcnow()
    )


def get_approval(actor: Actor, approval_id: str) -> ApprovalView:
    """Return one approval with its line items and current steps."""
    return _view(_load(actor, approval_id))


# --- routing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Where a submit sends an approval: auto-approval, or one step per level up to a level."""

    auto_approve: bool
    max_line_discount_bps: int  # rounded, for display; decisions use exact comparisons
    threshold_bps: int
    required: ApprovalLevel | None
    levels: list[ApprovalLevel]


def _largest_discount(items: list[Any]) -> tuple[int, int]:
    """Return the largest per-unit line discount as an exact fraction (discount, list price)."""
    best = (0, 1)
    for item in items:
        discount, price = item.unit_list_price - item.unit_price, item.unit_list_price
        if discount * best[1] > best[0] * price:
            best = (discount, price)
    return best


def _covers(bps: int, discount: tuple[int, int]) -> bool:
    """Whether ``bps`` basis points cover the discount ``discount[0] / discount[1]``."""
    return discount[0] * 10_000 <= bps * discount[1]


def _level_covers(level: ApprovalLevel, discount: tuple[int, int], approval: Any) -> bool:
    """Whether a level may approve: the largest line discount, and its amount cap if any."""
    if not _covers(level.max_discount_bps, discount):
        return False
    if level.max_discount_amount is None:
        return True
    total_discount = approval.list_amount - approval.amount
    return (
        level.max_discount_currency == approval.currency
        and total_discount <= level.max_discount_amount
    )


def _bps(numerator: int, denominator: int) -> int:
    """Round a fraction to basis points, half up."""
    return round(percent_of(numerator, denominator) * 100)


def _levels_by_rank(organization_id: str) -> list[ApprovalLevel]:
    return list(
        db.session.execute(
            select(ApprovalLevel)
            .where(ApprovalLevel.organization_id == organization_id)
            .order_by(ApprovalLevel.rank)
        ).scalars()
    )


def levels_by_rank(actor: Actor) -> list[ApprovalLevel]:
    """Return every approval level of the organization, rank 1 first."""
    return _levels_by_rank(actor.organization_id)


def route_for(organization: Organization, approval: Approval) -> Route:
    """Compute the route of a submit now: deterministic, from the line items and the levels."""
    discount = _largest_discount(approval.line_items)
    threshold = organization.auto_approve_threshold_bps
    display = _bps(*discount)
    if _covers(threshold, discount):
        return Route(True, display, threshold, None, [])
    levels = _levels_by_rank(organization.id)
    if not levels:
        raise Conflict(
            "This discount needs approval, and the organization has no approval levels yet."
        )
    required = next((lvl for lvl in levels if _level_covers(lvl, discount, approval)), None)
    required = required or levels[-1]  # nothing covers it: the highest level decides
    steps = [level for level in levels if level.rank <= required.rank]
    return Route(False, display, threshold, required, steps)


def preview(actor: Actor, approval_id: str) -> tuple[Approval, Route]:
    """Return the route a submit of this approval would take now."""
    approval = _load(actor, approval_id)
    if not approval.line_items:
        raise InvalidParameter(
            "Add at least one line item to see the route of this approval.", param="line_items"
        )
    return approval, route_for(get_organization(actor), approval)


def preview_route(actor: Actor, currency: str, items: list[LineItemInput]) -> Route:
    """Return the route a request with these line items would take, before it is saved."""
    if not items:
        raise InvalidParameter("Add at least one line item.", param="line_items")
    draft = SimpleNamespace(
        line_items=items,
        currency=currency,
        list_amount=sum(item.quantity * item.unit_list_price for item in items),
        amount=sum(item.quantity * item.unit_price for item in items),
    )
    return route_for(get_organization(actor), draft)


# --- writing -----------------------------------------------------------------------------------


class EventLog:
    """The events of one transaction, stamped in order (a microsecond apart)."""

    def __init__(self, actor: Actor | None, now: datetime) -> None:
        self.recorded = actor.recorded_as() if actor is not None else SYSTEM
        self.organization_id = actor.organization_id if actor is not None else None
        self.now = now
        self.count = 0

    def add(
        self,
        type_: str,
        *,
        approval_id: str | None = None,
        organization_id: str | None = None,
        recorded: dict[str, Any] | None = None,
        **data: Any,
    ) -> Event:
        event = Event(
            organization_id=organization_id or self.organization_id,
            approval_id=approval_id,
            type=type_,
            data=data,
            created_at=self.now + timedelta(microseconds=self.count),
            **(recorded or self.recorded),
        )
        self.count += 1
        db.session.add(event)
        return event


def _is_requester_or_manager(actor: Actor, approval: Any) -> bool:
    return actor.manages_organization or approval.requested_by_id == actor.user.id


def _require_requester_or_manager(actor: Actor, approval: Approval, what: str) -> None:
    if not _is_requester_or_manager(actor, approval):
        raise PermissionDenied(
            f"Only the requester, admins and the owner may {what} this approval."
        )


def _decision_refusal(actor: Actor, approval: Any, step: Any) -> str | None:
    """Why the actor may not decide the approval's active step (``None``: they may)."""
    user = actor.user
    if user.id == approval.requested_by_id:
        return "The requester cannot decide their own approval."
    if user.approval_level_id is None or user.approval_level_id != step.approval_level_id:
        return f"Only an approver at the level {step.level_name!r} may decide this step."
    return None


def allowed_actions(actor: Actor, view: ApprovalView) -> frozenset[str]:
    """The actions the actor may take on an approval now, by the rules the actions enforce.

    Surfaces show only these; the actions check again when they run.
    """
    approval, status = view.approval, view.status
    allowed = set()
    if _is_requester_or_manager(actor, approval):
        if status in EDITABLE:
            allowed |= {"edit", "submit"}
        if status == ApprovalStatus.DRAFT:
            allowed.add("delete")
        if status == ApprovalStatus.PENDING:
            allowed.add("recall")
        if status in OPEN:
            allowed.add("cancel")
    if status == ApprovalStatus.PENDING:
        step = next((s for s in view.steps if s.status == StepStatus.PENDING), None)
        if step is not None and _decision_refusal(actor, approval, step) is None:
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
    begin_write(actor.organization_id)
    now = utcnow()
    approval = _load(actor, approval_id, for_update=True)
    if approval.status not in allowed:
        _refuse_transition(approval, action, now)
    _require_requester_or_manager(actor, approval, action)
    return approval, now


def _set_line_items(approval: Approval, items: list[LineItemInput]) -> None:
    approval.line_items = [
        LineItem(
            position=position,
            sku=item.sku,
            description=item.description,
            quantity=item.quantity,
            unit_list_price=item.unit_list_price,
            unit_price=item.unit_price,
        )
        for position, item in enumerate(items, start=1)
    ]
    approval.list_amount = sum(item.quantity * item.unit_list_price for item in items)
    approval.amount = sum(item.quantity * item.unit_price for item in items)
    approval.max_line_discount_bps = _bps(*_largest_discount(items))


def _requester(actor: Actor, requested_by: str | None) -> User:
    if requested_by is None or requested_by == actor.user.id:
        return actor.user
    if not actor.manages_organization:
        raise PermissionDenied("Only admins and the owner may ask on another member's behalf.")
    try:
        return get_member(actor, requested_by)
    except NotFound as error:
        raise InvalidParameter(error.message, param="requested_by") from error


def create_approval(actor: Actor, data: ApprovalCreate) -> ApprovalView:
    """Create a draft (and submit it at once when ``data.submit``)."""
    begin_write(actor.organization_id)
    now = utcnow()
    requester = _requester(actor, data.requested_by)
    approval = Approval(
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
    _set_line_items(approval, data.line_items)
    db.session.add(approval)
    db.session.flush()
    events = EventLog(actor, now)
    events.add("approval.created", approval_id=approval.id, requested_by=requester.id)
    if data.submit:
        _submit(actor, approval, events)
    db.session.commit()
    return _view(approval, now)


def update_approval(actor: Actor, approval_id: str, data: ApprovalUpdate) -> ApprovalView:
    """Change a draft or an approval sent back for changes; line items are replaced whole."""
    approval, now = _change(actor, approval_id, EDITABLE, "edit")
    changed = sorted(data.model_fields_set)
    for name in changed:
        if name == "line_items":
            _set_line_items(approval, data.line_items)
        elif name == "metadata":
            approval.metadata_ = dict(data.metadata)
        else:
            setattr(approval, name, getattr(data, name))
    approval.updated_at = now
    EventLog(actor, now).add("approval.updated", approval_id=approval.id, fields=changed)
    db.session.commit()
    return _view(approval, now)


def delete_approval(actor: Actor, approval_id: str) -> str:
    """Delete a draft for good (its events stay in the audit trail)."""
    approval, now = _change(actor, approval_id, {ApprovalStatus.DRAFT}, "delete")
    EventLog(actor, now).add("approval.deleted", approval_id=approval.id, title=approval.title)
    db.session.delete(approval)
    db.session.commit()
    return approval_id


def _submit(actor: Actor, approval: Approval, events: EventLog) -> None:
    now = events.now
    if not approval.line_items:
        raise InvalidParameter("Add at least one line item before submitting.", param="line_items")
    organization = get_organization(actor)
    route = route_for(organization, approval)
    approval.round += 1
    approval.submitted_at = now
    approval.updated_at = now
    events.add("approval.submitted", approval_id=approval.id, round=approval.round)
    if route.auto_approve:
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
                **SYSTEM,
            )
        )
        events.add(
            "approval.approved",
            approval_id=approval.id,
            recorded=SYSTEM,
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
            )
        )


def submit(actor: Actor, approval_id: str) -> ApprovalView:
    """Send a draft (or a changed approval) for approval along its route, frozen now."""
    approval, now = _change(actor, approval_id, EDITABLE, "submit")
    _submit(actor, approval, EventLog(actor, now))
    db.session.commit()
    return _view(approval, now)


def _close_round(approval: Approval, status: StepStatus) -> None:
    """End the open steps of the current round (recall, cancel, reject, request changes)."""
    for step in approval.current_steps():
        if step.status in (StepStatus.PENDING, StepStatus.WAITING):
            step.status = status.value
    approval.awaiting_level_id = None


def _decide(actor: Actor, approval_id: str, kind: DecisionType, comment: str | None):
    begin_write(actor.organization_id)
    now = utcnow()
    approval = _load(actor, approval_id, for_update=True)
    verb = {"approve": "approve", "reject": "reject", "request_changes": "request changes on"}
    if approval.status != ApprovalStatus.PENDING:
        _refuse_transition(approval, verb[kind.value], now)
    step = next(s for s in approval.current_steps() if s.status == StepStatus.PENDING)
    refusal = _decision_refusal(actor, approval, step)
    if refusal is not None:
        raise PermissionDenied(refusal)
    user = actor.user
    if kind is not DecisionType.APPROVE and not comment:
        raise InvalidParameter("A comment is required.", param="comment")
    step.decided_by_id = user.id
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
        approval.status = ApprovalStatus.CHANGES_REQUESTED.value
        events.add("approval.changes_requested", approval_id=approval.id, step=step.id)
    db.session.commit()
    return _view(approval, now)


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
    approval.status = ApprovalStatus.DRAFT.value
    approval.required_level_id = None
    approval.updated_at = now
    EventLog(actor, now).add("approval.recalled", approval_id=approval.id)
    db.session.commit()
    return _view(approval, now)


def cancel(actor: Actor, approval_id: str, comment: str | None = None) -> ApprovalView:
    """Cancel an approval that is not decided yet."""
    approval, now = _change(actor, approval_id, OPEN, "cancel")
    _close_round(approval, StepStatus.CANCELED)
    approval.status = ApprovalStatus.CANCELED.value
    approval.updated_at = now
    EventLog(actor, now).add("approval.canceled", approval_id=approval.id, comment=comment or "")
    db.session.commit()
    return _view(approval, now)


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
    events = EventLog(None, now)
    for approval_id, organization_id in due:
        events.add("approval.expired", approval_id=approval_id, organization_id=organization_id)
        mark_changed(organization_id)
    if due:
        db.session.execute(
            update(Approval)
            .where(Approval.id.in_([row.id for row in due]))
            .values(status=ApprovalStatus.EXPIRED.value, updated_at=now)
        )
    db.session.commit()
    return len(due)


# --- history -----------------------------------------------------------------------------------


def _page_of(statement, model, page: PageRequest, scope) -> tuple[list[Any], bool]:
    rows, has_more = paginate(statement, model, page, scope=scope)
    return [row[0] for row in rows], has_more


def list_decisions(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's decisions, newest first."""
    _load(actor, approval_id)
    scope = Decision.approval_id == approval_id
    return _page_of(select(Decision).where(scope), Decision, page, scope)


def list_comments(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's comments, newest first."""
    _load(actor, approval_id)
    scope = Comment.approval_id == approval_id
    return _page_of(select(Comment).where(scope), Comment, page, scope)


def add_comment(actor: Actor, approval_id: str, body: str) -> Comment:
    """Comment on an approval the actor can see."""
    begin_write(actor.organization_id)
    now = utcnow()
    approval = _load(actor, approval_id, for_update=True)
    comment = Comment(
        organization_id=approval.organization_id,
        approval_id=approval.id,
        body=body,
        created_at=now,
        **actor.recorded_as(),
    )
    db.session.add(comment)
    db.session.flush()
    EventLog(actor, now).add("comment.created", approval_id=approval.id, comment=comment.id)
    db.session.commit()
    return comment


def list_approval_events(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's audit trail, newest first."""
    _load(actor, approval_id)
    scope = and_(Event.organization_id == actor.organization_id, Event.approval_id == approval_id)
    return _page_of(select(Event).where(scope), Event, page, scope)


def list_events(actor: Actor, page: PageRequest):
    """Return one page of the organization's audit trail; owner and admins only."""
    actor.require_manager("read the organization's audit trail")
    scope = Event.organization_id == actor.organization_id
    return _page_of(select(Event).where(scope), Event, page, scope)


# --- approval levels ---------------------------------------------------------------------------


def list_levels(actor: Actor, page: PageRequest):
    """Return one page of the organization's approval levels, newest first."""
    scope = ApprovalLevel.organization_id == actor.organization_id
    return _page_of(select(ApprovalLevel).where(scope), ApprovalLevel, page, scope)


def _load_level(actor: Actor, level_id: str) -> ApprovalLevel:
    level = db.session.execute(
        select(ApprovalLevel).where(
            ApprovalLevel.id == level_id, ApprovalLevel.organization_id == actor.organization_id
        )
    ).scalar_one_or_none()
    if level is None:
        raise NotFound(f"No such approval level: {level_id!r}.", param="id")
    return level


def get_level(actor: Actor, level_id: str) -> ApprovalLevel:
    """Return one approval level."""
    return _load_level(actor, level_id)


def _commit_level(level: ApprovalLevel) -> ApprovalLevel:
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise Conflict(
            "Another approval level has this rank. Each level has its own rank.", param="rank"
        ) from error
    return level


def create_level(actor: Actor, data: LevelCreate) -> ApprovalLevel:
    """Add an approval level; owner and admins only."""
    actor.require_manager("manage approval levels")
    begin_write(actor.organization_id)
    now = utcnow()
    events = EventLog(actor, now)  # reads the actor before the new row can be flushed
    level = ApprovalLevel(
        id=new_id("lvl"),
        organization_id=actor.organization_id,
        name=data.name,
        rank=data.rank,
        max_discount_bps=to_bps(data.max_discount_percent),
        max_discount_amount=data.max_discount_amount.amount if data.max_discount_amount else None,
        max_discount_currency=(
            data.max_discount_amount.currency if data.max_discount_amount else None
        ),
        created_at=now,
        updated_at=now,
    )
    db.session.add(level)
    events.add("approval_level.created", level=level.id, name=level.name)
    return _commit_level(level)


def update_level(actor: Actor, level_id: str, data: LevelUpdate) -> ApprovalLevel:
    """Change a level; steps already routed keep the level as it was at their submit."""
    actor.require_manager("manage approval levels")
    begin_write(actor.organization_id)
    now = utcnow()
    level = _load_level(actor, level_id)
    events = EventLog(actor, now)  # reads the actor before the change can be flushed
    changed = sorted(data.model_fields_set)
    if "name" in changed:
        level.name = data.name
    if "rank" in changed:
        level.rank = data.rank
    if "max_discount_percent" in changed:
        level.max_discount_bps = to_bps(data.max_discount_percent)
    if "max_discount_amount" in changed:
        cap = data.max_discount_amount
        level.max_discount_amount = cap.amount if cap else None
        level.max_discount_currency = cap.currency if cap else None
    level.updated_at = now
    events.add("approval_level.updated", level=level.id, fields=changed)
    return _commit_level(level)


def delete_level(actor: Actor, level_id: str) -> str:
    """Delete a level no open step waits on; its approvers lose the level."""
    actor.require_manager("manage approval levels")
    begin_write(actor.organization_id)
    now = utcnow()
    level = _load_level(actor, level_id)
    open_steps = db.session.execute(
        select(func.count())
        .select_from(Step)
        .where(
            Step.approval_level_id == level.id,
            Step.status.in_([StepStatus.PENDING.value, StepStatus.WAITING.value]),
        )
    ).scalar_one()
    if open_steps:
        raise Conflict(
            f"{open_steps} open approval step(s) wait on this level. Decide, recall or cancel "
            "those approvals first."
        )
    db.session.execute(
        update(User).where(User.approval_level_id == level.id).values(approval_level_id=None)
    )
    db.session.execute(
        update(Approval)
        .where(Approval.required_level_id == level.id)
        .values(required_level_id=None)
    )
    db.session.execute(
        update(Step).where(Step.approval_level_id == level.id).values(approval_level_id=None)
    )
    EventLog(actor, now).add("approval_level.deleted", level=level.id, name=level.name)
    db.session.execute(delete(ApprovalLevel).where(ApprovalLevel.id == level.id))
    db.session.commit()
    return level_id


def assign_level(actor: Actor, member_id: str, level_id: str | None) -> User:
    """Make a member an approver at a level (or no approver); owner and admins only."""
    actor.require_manager("change members")
    begin_write(actor.organization_id)
    now = utcnow()
    member = get_member(actor, member_id)
    if level_id is not None:
        _load_level(actor, level_id)
    member.approval_level_id = level_id
    EventLog(actor, now).add("member.updated", member=member.id, approval_level=level_id)
    db.session.commit()
    return member


# --- organization settings ---------------------------------------------------------------------


def update_settings(actor: Actor, data: SettingsUpdate) -> Organization:
    """Change the organization's name, auto-approve threshold or default validity."""
    actor.require_manager("change the organization's settings")
    begin_write(actor.organization_id)
    now = utcnow()
    organization = get_organization(actor)
    changed = sorted(data.model_fields_set)
    if "name" in changed:
        organization.name = data.name
    if "auto_approve_threshold_percent" in changed:
        organization.auto_approve_threshold_bps = to_bps(data.auto_approve_threshold_percent)
    if "default_validity_days" in changed:
        organization.default_validity_days = data.default_validity_days
    organization.updated_at = now
    EventLog(actor, now).add("organization.updated", fields=changed)
    db.session.commit()
    return organization
