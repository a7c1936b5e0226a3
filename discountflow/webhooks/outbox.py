"""Webhooks join the transactional outbox: every event becomes its webhook deliveries in its own
transaction.

The outbox's listener (``discountflow.outbox``) hands over the ``Event`` rows a transaction adds
just before it commits. Each event some enabled endpoint of its organization subscribes to
becomes one message — the JSON body every endpoint receives, ``{"id", "type", "created",
"data": {"object": …}}``, where the object is the API's own ``Out`` model of what the event is
about, as the transaction leaves it — and one pending delivery per subscribed endpoint. They
commit with the change and its event, or roll back with them: an event exists if and only if
its deliveries do. (An endpoint does not hear the events about itself: its own creation,
rotation or disabling.) The worker (``worker.py``) sends them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..approvals.models import Approval, ApprovalLevel, Comment
from ..approvals.queries import view_of
from ..approvals.schemas import ApprovalOut, CommentOut, LevelOut
from ..audit.models import Event
from ..audit.schemas import EventOut
from ..auth.models import ApiKey
from ..auth.schemas import ApiKeyOut
from ..database import new_id, rfc3339
from ..notifications.models import NotificationDestination
from ..notifications.schemas import DestinationOut
from ..organizations.models import Organization, User
from ..organizations.schemas import MemberOut, OrganizationOut
from ..outbox import listen
from ..products.models import Product
from ..products.schemas import ProductOut
from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage, subscribed
from .schemas import EndpointOut

# --- what an event is about, as the API shows it -----------------------------------------------


def _deleted(kind: str, object_id: Any) -> dict[str, Any]:
    return {"object": kind, "id": object_id, "deleted": True}


# Kinds of events whose service changes rows with a bulk UPDATE, past the identity map: their
# objects are read again from the database.
_WRITTEN_IN_BULK = frozenset({"api_key.generated", "api_key.rolled", "api_key.revoked"})
_WRITTEN_IN_BULK |= {"approval.expired"}


def _load(session: Session, model: Any, object_id: Any, fresh: bool) -> Any:
    """The row as the transaction left it."""
    if not isinstance(object_id, str):
        return None
    if not fresh:
        return session.get(model, object_id)
    return session.execute(
        select(model).where(model.id == object_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()


class _Objects:
    """The objects of one transaction's events as JSON text, each shaped once (an approve
    writes two events about one approval)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.shaped: dict[tuple[str, Any], str] = {}

    def shown(self, each: Event, model: Any, object_id: Any, shape: Callable, kind: str) -> str:
        key = (kind, object_id)
        if key not in self.shaped:
            row = _load(self.session, model, object_id, each.type in _WRITTEN_IN_BULK)
            if row is None:
                self.shaped[key] = _deleted_json(kind, object_id)
            elif kind == "approval":  # with its line items and steps, as of the event
                self.shaped[key] = ApprovalOut.of(view_of(row, each.created_at)).model_dump_json()
            else:
                self.shaped[key] = shape(row).model_dump_json()
        return self.shaped[key]


def _deleted_json(kind: str, object_id: Any) -> str:
    return json.dumps(_deleted(kind, object_id), separators=(",", ":"))


# The kind of an event type (before its dot) → the model, where its id is, the shape.
_OBJECTS: dict[str, tuple[Any, Callable[[Event], Any], Callable]] = {
    "approval": (Approval, lambda e: e.approval_id, None),  # ApprovalOut, with its lists
    "comment": (Comment, lambda e: e.data.get("comment"), CommentOut.of),
    "api_key": (ApiKey, lambda e: e.data.get("api_key"), ApiKeyOut.of),
    "member": (User, lambda e: e.data.get("member"), MemberOut.of),
    "approval_level": (ApprovalLevel, lambda e: e.data.get("level"), LevelOut.of),
    "organization": (Organization, lambda e: e.organization_id, OrganizationOut.of),
    "product": (Product, lambda e: e.data.get("product"), ProductOut.of),
    "webhook_endpoint": (WebhookEndpoint, lambda e: e.data.get("endpoint"), EndpointOut.of),
    "notification_destination": (
        NotificationDestination,
        lambda e: e.data.get("destination"),
        DestinationOut.of,  # its URL masked, as the API shows it
    ),
}


def payload_of(objects: _Objects, each: Event) -> str:
    """The body every endpoint receives for this event, as JSON text."""
    kind = each.type.split(".", 1)[0]
    if kind in _OBJECTS:
        model, id_of, shape = _OBJECTS[kind]
        if each.type.endswith(".deleted"):
            shown = _deleted_json(kind, id_of(each))
        else:
            shown = objects.shown(each, model, id_of(each), shape, kind)
    else:
        shown = EventOut.of(each).model_dump_json()
    head = {"id": each.id, "type": each.type, "created": rfc3339(each.created_at)}
    return json.dumps(head, separators=(",", ":"))[:-1] + ',"data":{"object":' + shown + "}}"


# --- the writer --------------------------------------------------------------------------------


# Built once (SQLAlchemy then compiles each once): the enabled endpoints of some
# organizations, and the inserts.
_endpoints = WebhookEndpoint.__table__.c
_ENABLED_ENDPOINTS = select(_endpoints.id, _endpoints.organization_id, _endpoints.events).where(
    _endpoints.organization_id.in_(bindparam("organizations", expanding=True)),
    _endpoints.enabled.is_(True),
)


def write_deliveries(session: Session, events: list[Event]) -> None:
    """Before the commit: the messages and deliveries of the transaction's events."""
    connection = session.connection()
    endpoints: dict[str, list[Any]] = {}
    for endpoint in connection.execute(
        _ENABLED_ENDPOINTS, {"organizations": list({each.organization_id for each in events})}
    ):
        endpoints.setdefault(endpoint.organization_id, []).append(endpoint)
    if not endpoints:
        return
    messages, deliveries = [], []
    objects = _Objects(session)
    for each in events:
        about = each.data.get("endpoint") if each.type.startswith("webhook_endpoint.") else None
        targets = [
            endpoint
            for endpoint in endpoints.get(each.organization_id, ())
            if subscribed(endpoint.events, each.type) and endpoint.id != about
        ]
        if not targets:
            continue
        messages.append(
            {
                "id": each.id,
                "organization_id": each.organization_id,
                "type": each.type,
                "payload": payload_of(objects, each),
                "created_at": each.created_at,
            }
        )
        deliveries += [
            {
                "id": new_id("whd"),
                "organization_id": each.organization_id,
                "endpoint_id": endpoint.id,
                "message_id": each.id,
                "event_type": each.type,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": each.created_at,
                "last_error": "",
                "last_response": "",
                "created_at": each.created_at,
            }
            for endpoint in targets
        ]
    if messages:
        connection.execute(WebhookMessage.__table__.insert(), messages)
        connection.execute(WebhookDelivery.__table__.insert(), deliveries)


def install() -> None:
    """Hand every transaction's events to :func:`write_deliveries`."""
    listen(write_deliveries)
