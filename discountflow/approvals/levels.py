"""Approval levels, the limits of authority routing climbs: "Manager up to 15 %, VP up to 30 %,
CFO above". The owner and admins manage them; everyone may read them."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..actors import Actor, fetch, writing
from ..audit.services import EventLog
from ..database import new_id, utcnow
from ..errors import Conflict
from ..extensions import db
from ..organizations.models import User
from ..pagination import PageRequest, page_of
from ..schemas import to_bps
from .models import Approval, ApprovalLevel, Step, StepStatus
from .schemas import LevelCreate, LevelUpdate

MANAGE_LEVELS = "manage approval levels"


def levels_of(organization_id: str) -> list[ApprovalLevel]:
    """Every approval level of an organization, rank 1 first."""
    return list(
        db.session.execute(
            select(ApprovalLevel)
            .where(ApprovalLevel.organization_id == organization_id)
            .order_by(ApprovalLevel.rank)
        ).scalars()
    )


def levels_by_rank(actor: Actor) -> list[ApprovalLevel]:
    """Return every approval level of the organization, rank 1 first."""
    return levels_of(actor.organization_id)


def list_levels(actor: Actor, page: PageRequest) -> tuple[list[ApprovalLevel], bool]:
    """Return one page of the organization's approval levels, newest first."""
    return page_of(ApprovalLevel, page, ApprovalLevel.organization_id == actor.organization_id)


def get_level(actor: Actor, level_id: str) -> ApprovalLevel:
    """Return one approval level of the actor's organization."""
    return fetch(actor, ApprovalLevel, level_id, "approval level")


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
    writing(actor)
    actor.require_manager(MANAGE_LEVELS)
    now = utcnow()
    events = EventLog(actor, now)  # reads the actor before the new row can be flushed
    cap = data.max_discount_amount
    level = ApprovalLevel(
        id=new_id("lvl"),
        organization_id=actor.organization_id,
        name=data.name,
        rank=data.rank,
        max_discount_bps=to_bps(data.max_discount_percent),
        max_discount_amount=cap.amount if cap else None,
        max_discount_currency=cap.currency if cap else None,
        created_at=now,
        updated_at=now,
    )
    db.session.add(level)
    events.add("approval_level.created", level=level.id, name=level.name, rank=level.rank)
    return _commit_level(level)


def update_level(actor: Actor, level_id: str, data: LevelUpdate) -> ApprovalLevel:
    """Change a level; steps already routed keep the level as it was at their submit."""
    writing(actor)
    actor.require_manager(MANAGE_LEVELS)
    now = utcnow()
    level = get_level(actor, level_id)
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
    writing(actor)
    actor.require_manager(MANAGE_LEVELS)
    now = utcnow()
    level = get_level(actor, level_id)
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
    approvers = list(
        db.session.execute(select(User.id).where(User.approval_level_id == level.id)).scalars()
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
    EventLog(actor, now).add(
        "approval_level.deleted", level=level.id, name=level.name, approvers=sorted(approvers)
    )
    db.session.execute(delete(ApprovalLevel).where(ApprovalLevel.id == level.id))
    db.session.commit()
    return level_id
