"""The audit trail's table: who did what, through which surface and key."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class Event(db.Model):
    """One change: its type (``approval.approved``, ``api_key.generated`` …), who made it
    (member, key, system), through which surface, and what changed.

    ``approval_id`` is deliberately not a foreign key: the trail outlives a deleted draft.
    Keys appear by their public id only, never their text.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_organization_created", "organization_id", "created_at", "id"),
        Index("ix_events_organization_type", "organization_id", "type", "created_at", "id"),
        Index("ix_events_approval_created", "approval_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "evt"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    approval_id: Mapped[str | None] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(48))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[str | None] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    surface: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
