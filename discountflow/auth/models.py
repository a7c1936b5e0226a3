"""The tables of API keys and of signed-in dashboard sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db
from ..organizations.models import Organization, User


class Environment(enum.StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"


class DashboardSession(db.Model):
    """A signed-in dashboard session, named in the session cookie.

    It ends when its member signs out, when they sign out everywhere, or when their role
    changes; a copy of the cookie is worth nothing from then on.
    """

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(db.Model):
    """An API key. Only a bcrypt hash of the whole key is kept; the id is its public lookup id."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # A slot (organization, environment, scope) has at most one current key. A rolled key
        # keeps working until it expires but is no longer current (replaced_at is set).
        Index(
            "uq_api_keys_one_current_key_per_slot",
            "organization_id",
            "environment",
            "read_only",
            unique=True,
            sqlite_where=text("revoked_at IS NULL AND replaced_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL AND replaced_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    environment: Mapped[str] = mapped_column(String(16))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    key_hash: Mapped[str] = mapped_column(String(60))
    last_four: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organization: Mapped[Organization] = relationship()
    created_by: Mapped[User | None] = relationship()
