"""Tables for webhooks: the endpoints an organization registers, the messages its events
become, and one delivery per (message, endpoint) — the outbox the worker empties."""

from __future__ import annotations

import enum
from datetime import datetime
from functools import partial

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import UTCDateTime, new_id, utcnow
from ..extensions import db


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # no 2xx within the retry window, or its endpoint was disabled


class WebhookEndpoint(db.Model):
    """A URL that receives the organization's events, signed with its own secret.

    The secret is kept encrypted (the signature is an HMAC, so the service needs the secret
    itself, not a hash of it); after a rotation the previous one signs too, for 24 hours.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_organization_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "whe"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # types, kind.*, or *
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)  # encrypted (signing.py)
    previous_secret: Mapped[str | None] = mapped_column(Text)  # encrypted, until it expires
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every attempt since this time failed (none since the last success); after 3 days of it
    # the worker disables the endpoint and says why.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookMessage(db.Model):
    """What is sent for one event: the exact body every endpoint receives (and signs)."""

    __tablename__ = "webhook_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the event's id (evt_…)
    # No index: nothing looks messages up by organization (each commit writes one page less).
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    type: Mapped[str] = mapped_column(String(48))
    payload: Mapped[str] = mapped_column(Text)  # JSON, as sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One message to one endpoint: attempted until a 2xx, or until its window closes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's question: which pending deliveries are due?
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # An endpoint's deliveries, newest first.
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=partial(new_id, "whd"))
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker's claim: the row is its own until claimed_until (then due again, if it died).
    claim: Mapped[str | None] = mapped_column(String(32))
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str] = mapped_column(Text, default="")  # at most 4 KiB of the body
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} {self.status} attempts={self.attempts}>"


def subscribed(events: list[str], event_type: str) -> bool:
    """Whether an endpoint listening to ``events`` hears ``event_type``."""
    kind = event_type.split(".", 1)[0]
    return any(each in ("*", event_type, f"{kind}.*") for each in events)
