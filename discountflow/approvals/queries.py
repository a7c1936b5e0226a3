"""Reading approvals: what an actor may see, lists with their filters, one approval with its
line items and steps, and its history. Nothing here writes or commits a change.

Every query is scoped to the actor's organization (another organization's id is simply not
found) and to what the actor may see (members: their own approvals).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from ..actors import Actor
from ..audit.models import Event
from ..audit.services import events_of_approval
from ..database import require_usable_id, utcnow
from ..errors import NotFound
from ..extensions import db
from ..organizations.models import User
from ..pagination import PageRequest, page_of, paginate
from .models import (
    Approval,
    ApprovalStatus,
    Comment,
    Decision,
    LineItem,
    Participant,
    Step,
    effective_status,
)
from .schemas import ApprovalListQuery


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
# approvals with their line items and steps). Rows carry the ORM attribute names, so the one
# Out model of each shapes rows and objects alike.
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


def visible_to(actor: Actor):
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


def decidable_by(member_id: str, level_id: str | None):
    """Four eyes — the one place the rule is written: the pending approvals whose active step
    this member may decide. Only an approver at the step's level; never the requester, nor
    anyone who created, edited or submitted the current round (an API key counts as the owner
    it acts for). The inbox lists these, the services decide by them, and notifications
    ask these members (``member_id`` and ``level_id`` may then be columns of members)."""
    if level_id is None:  # not an approver: nothing awaits their decision
        return false()
    # Correlated to any enclosing query: the member may be a column of it (who is notified).
    took_part = (
        exists()
        .where(Participant.approval_id == _approvals.id, Participant.user_id == member_id)
        .correlate_except(Participant)
    )
    return and_(
        _approvals.status == ApprovalStatus.PENDING,
        _approvals.awaiting_level_id == level_id,
        _approvals.requested_by_id != member_id,
        ~took_part,
    )


def may_decide(member: User, approval_id: str) -> bool:
    """Whether the member may decide the approval's active step now (``decidable_by``)."""
    condition = decidable_by(member.id, member.approval_level_id)
    return db.session.execute(
        select(exists().where(_approvals.id == approval_id, condition))
    ).scalar_one()


def deciders(session: Session, approval: Approval) -> list[str]:
    """The members who may decide the approval's active step now (the inbox's rule): whom
    notifications ask, and none means it waits for nobody (its page says so)."""
    if approval.status != ApprovalStatus.PENDING:
        return []  # decided in the same transaction (the last step, an auto-approval)
    may = exists().where(
        _approvals.id == approval.id, decidable_by(User.id, User.approval_level_id)
    )
    return list(
        session.execute(
            select(User.id)
            .where(
                User.organization_id == approval.organization_id,
                User.removed_at.is_(None),
                may,
            )
            .order_by(User.id)
        ).scalars()
    )


def waits_for_nobody(approval: Any) -> bool:
    """Whether the approval is pending at a step no member may decide (nobody holds its
    level, or each who does took part in this round): its page says so."""
    return approval.status == ApprovalStatus.PENDING and not deciders(db.session, approval)


def _awaiting_decision_by(actor: Actor, member_id: str):
    """The condition for the approvals awaiting this member's decision (the inbox)."""
    level_id = db.session.execute(
        select(User.approval_level_id).where(
            User.id == member_id, User.organization_id == actor.organization_id
        )
    ).scalar_one_or_none()
    return decidable_by(member_id, level_id)


def _listed(actor: Actor, query: ApprovalListQuery, now: datetime):
    """The approvals the actor may see, filtered as asked (not yet paginated)."""
    statement = select(*_APPROVAL_COLUMNS).where(visible_to(actor))
    if query.status:
        statement = statement.where(_status_condition(query.status, now))
    if query.requested_by is not None:
        statement = statement.where(_approvals.requested_by_id == query.requested_by)
    if query.awaiting_decision_by is not None:
        statement = statement.where(_awaiting_decision_by(actor, query.awaiting_decision_by))
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
    rows, has_more = paginate(
        _listed(actor, query, now), Approval.__table__, page, scope=visible_to(actor)
    )
    return _views_of(rows, now), has_more


def load(actor: Actor, approval_id: str, *, for_update: bool = False) -> Approval:
    """Return an approval the actor may see (locked for update when asked), or 404."""
    require_usable_id(approval_id)
    statement = select(Approval).where(Approval.id == approval_id, visible_to(actor))
    if for_update:
        statement = statement.with_for_update()
    approval = db.session.execute(statement).scalar_one_or_none()
    if approval is None:
        raise NotFound(f"No such approval: {approval_id!r}.", param="id")
    return approval


def view_of(approval: Approval, now: datetime | None = None) -> ApprovalView:
    """An approval object with its line items and current steps."""
    return ApprovalView(
        approval, list(approval.line_items), approval.current_steps(), now or utcnow()
    )


def get_approval(actor: Actor, approval_id: str) -> ApprovalView:
    """Return one approval with its line items and current steps."""
    return view_of(load(actor, approval_id))


# --- history -----------------------------------------------------------------------------------


def list_decisions(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's decisions, newest first."""
    load(actor, approval_id)
    return page_of(Decision, page, Decision.approval_id == approval_id)


def list_comments(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's comments, newest first."""
    load(actor, approval_id)
    return page_of(Comment, page, Comment.approval_id == approval_id)


def list_approval_events(actor: Actor, approval_id: str, page: PageRequest):
    """Return one page of an approval's audit trail, newest first."""
    load(actor, approval_id)
    return events_of_approval(actor.organization_id, approval_id, page)


# --- the history of many approvals at once (GraphQL reads a page's in one query each) ---------


def newest_of(
    model: Any, organization_id: str, approval_ids: list[str], first: int
) -> dict[str, list[Any]]:
    """The ``first`` newest rows of ``model`` (decisions, comments, events) of each of these
    approvals, newest first, in one query; approvals without rows are left out."""
    if not approval_ids:
        return {}
    ranked = (
        select(
            model,
            func.row_number()
            .over(
                partition_by=model.approval_id,
                order_by=(model.created_at.desc(), model.id.desc()),
            )
            .label("position"),
        )
        .where(model.organization_id == organization_id, model.approval_id.in_(approval_ids))
        .subquery()
    )
    row = aliased(model, ranked)
    statement = (
        select(row)
        .where(ranked.c.position <= first)
        .order_by(ranked.c.approval_id, ranked.c.position)
    )
    found: dict[str, list[Any]] = {}
    for each in db.session.execute(statement).scalars():
        found.setdefault(each.approval_id, []).append(each)
    return found


def decisions_of(actor: Actor, approval_ids: list[str], first: int) -> dict[str, list[Decision]]:
    """The newest ``first`` decisions of each approval (ones the actor has seen)."""
    return newest_of(Decision, actor.organization_id, approval_ids, first)


def comments_of(actor: Actor, approval_ids: list[str], first: int) -> dict[str, list[Comment]]:
    """The newest ``first`` comments of each approval (ones the actor has seen)."""
    return newest_of(Comment, actor.organization_id, approval_ids, first)


def events_of(actor: Actor, approval_ids: list[str], first: int) -> dict[str, list[Event]]:
    """The newest ``first`` events of each approval (ones the actor has seen)."""
    return newest_of(Event, actor.organization_id, approval_ids, first)


def listed_with_lines(
    actor: Actor, query: ApprovalListQuery, chunk: int = 500
) -> Iterator[list[tuple[Any, list[Any]]]]:
    """Every approval the actor may see that the query's filters keep, newest first, each with
    its line items, in batches of ``chunk`` approvals (one query each): what the approvals
    list's CSV holds."""
    now = utcnow()
    statement = _listed(actor, query, now).order_by(
        _approvals.created_at.desc(), _approvals.id.desc()
    )
    connection = db.session.connection()
    rows = connection.execute(statement)
    while batch := rows.fetchmany(chunk):
        items: dict[str, list[Any]] = {row.id: [] for row in batch}
        for item in connection.execute(_LINE_ITEMS_OF, {"ids": list(items)}):
            items[item.approval_id].append(item)
        yield [(row, items[row.id]) for row in batch]
