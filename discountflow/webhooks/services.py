"""Webhook endpoints and their deliveries: the rules every surface shares.

The owner and admins (and the owner's full-access key) manage endpoints; read-only keys read
them. A new endpoint's signing secret, and a rotated one, is returned once and kept encrypted
(``signing.py``); its URL must be a safe destination (``safety.py``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from ..actors import Actor, fetch, require_room, writing
from ..audit.services import EventLog
from ..database import new_id, require_usable_id, rfc3339, utcnow
from ..errors import Conflict, NotFound
from ..extensions import db
from ..pagination import PageRequest, page_of
from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookMessage
from .safety import Rules, check_url
from .schemas import DeliveryListQuery, EndpointCreate, EndpointOut, EndpointUpdate
from .signing import new_secret, seal, unseal

MANAGE_ENDPOINTS = "manage webhook endpoints"
MAX_ENDPOINTS = 16  # per organization, as Stripe's
PREVIOUS_SECRET_SIGNS_FOR = timedelta(hours=24)


def destination_rules() -> Rules:
    """Where this deployment sends webhooks (``WEBHOOK_ALLOW_PRIVATE``, the environment)."""
    config = current_app.config
    return Rules(
        https_only=config["DISCOUNTFLOW_ENV"] == "production",
        allow_private=bool(config["WEBHOOK_ALLOW_PRIVATE"]),
    )


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one for 24 hours
    after a rotation."""
    secrets = [unseal(endpoint.secret)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(unseal(endpoint.previous_secret))
    return secrets


# --- endpoints ---------------------------------------------------------------------------------


def list_endpoints(actor: Actor, page: PageRequest) -> tuple[list[WebhookEndpoint], bool]:
    """Return one page of the organization's endpoints, newest first."""
    actor.require_manager("read webhook endpoints")
    scope = WebhookEndpoint.organization_id == actor.organization_id
    return page_of(WebhookEndpoint, page, scope)


def get_endpoint(actor: Actor, endpoint_id: str) -> WebhookEndpoint:
    actor.require_manager("read webhook endpoints")
    return fetch(actor, WebhookEndpoint, endpoint_id, "webhook endpoint")


def create_endpoint(actor: Actor, data: EndpointCreate) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; return it with its signing secret (shown this once)."""
    actor.require_write()
    actor.require_manager(MANAGE_ENDPOINTS)
    # Checked (its host resolved, in production) before the write begins: a slow DNS answer
    # must not hold SQLite's write lock.
    url = check_url(data.url, destination_rules())
    writing(actor)
    require_room(
        actor,
        WebhookEndpoint,
        MAX_ENDPOINTS,
        f"An organization has at most {MAX_ENDPOINTS} webhook endpoints: delete one it no "
        "longer uses first (one endpoint may subscribe to many events).",
    )
    now = utcnow()
    secret = new_secret()
    events = EventLog(actor, now)
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        organization_id=actor.organization_id,
        url=url,
        description=data.description,
        events=list(data.events),
        enabled=data.enabled,
        secret=seal(secret),
        disabled_reason="",
        created_at=now,
        updated_at=now,
    )
    db.session.add(endpoint)
    events.add("webhook_endpoint.created", endpoint=endpoint.id, url=url)
    db.session.commit()
    return endpoint, secret


def update_endpoint(actor: Actor, endpoint_id: str, data: EndpointUpdate) -> WebhookEndpoint:
    """Change an endpoint; enabling it again clears why the service disabled it.

    Enabling or disabling it is recorded as ``webhook_endpoint.enabled`` or ``.disabled`` (as
    the worker's own disabling is); other changes as ``webhook_endpoint.updated``."""
    actor.require_write()
    actor.require_manager(MANAGE_ENDPOINTS)
    given = "url" in data.model_fields_set
    url = check_url(data.url, destination_rules()) if given else None  # (as above)
    writing(actor)
    endpoint = get_endpoint(actor, endpoint_id)
    now = utcnow()
    changed = []
    if url is not None:
        if url != endpoint.url:
            endpoint.url = url
            changed.append("url")
    for name in ("events", "description", "enabled"):
        if name in data.model_fields_set and getattr(data, name) != getattr(endpoint, name):
            setattr(endpoint, name, getattr(data, name))
            changed.append(name)
    if "enabled" in changed and endpoint.enabled:
        endpoint.disabled_reason = ""
        endpoint.failing_since = None
    if changed:
        endpoint.updated_at = now
        events = EventLog(actor, now)
        fields = [name for name in changed if name != "enabled"]
        if fields:
            events.add("webhook_endpoint.updated", endpoint=endpoint.id, fields=fields)
        if "enabled" in changed and endpoint.enabled:
            events.add("webhook_endpoint.enabled", endpoint=endpoint.id)
        elif "enabled" in changed:
            events.add("webhook_endpoint.disabled", endpoint=endpoint.id)
    db.session.commit()
    return endpoint


def delete_endpoint(actor: Actor, endpoint_id: str) -> str:
    """Delete an endpoint and its deliveries (pending ones are not sent)."""
    writing(actor)
    actor.require_manager(MANAGE_ENDPOINTS)
    endpoint = get_endpoint(actor, endpoint_id)
    EventLog(actor, utcnow()).add(
        "webhook_endpoint.deleted", endpoint=endpoint.id, url=endpoint.url
    )
    db.session.delete(endpoint)
    db.session.commit()
    return endpoint_id


def rotate_secret(actor: Actor, endpoint_id: str) -> tuple[WebhookEndpoint, str]:
    """Give an endpoint a new secret (returned this once); the previous one keeps signing
    beside it for 24 hours, so a receiver can change over without losing an event."""
    writing(actor)
    actor.require_manager(MANAGE_ENDPOINTS)
    endpoint = get_endpoint(actor, endpoint_id)
    now = utcnow()
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_SIGNS_FOR
    endpoint.secret = seal(secret)
    endpoint.updated_at = now
    EventLog(actor, now).add(
        "webhook_endpoint.secret_rotated",
        endpoint=endpoint.id,
        previous_secret_expires=rfc3339(endpoint.previous_secret_expires_at),
    )
    db.session.commit()
    return endpoint, secret


def send_test(actor: Actor, endpoint_id: str) -> WebhookDelivery:
    """Queue a ``ping`` event for one endpoint (at once, whatever it subscribes to)."""
    writing(actor)
    actor.require_manager(MANAGE_ENDPOINTS)
    endpoint = get_endpoint(actor, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled: enable it to send it events.")
    now = utcnow()
    message_id = new_id("evt")
    body = {
        "id": message_id,
        "type": "ping",
        "created": rfc3339(now),
        "data": {"object": EndpointOut.of(endpoint).model_dump(mode="json")},
    }
    db.session.add(
        WebhookMessage(
            id=message_id,
            organization_id=actor.organization_id,
            type="ping",
            payload=json.dumps(body, separators=(",", ":")),
            created_at=now,
        )
    )
    db.session.flush()  # the message first: the delivery refers to it
    delivery = WebhookDelivery(
        id=new_id("whd"),
        organization_id=actor.organization_id,
        endpoint_id=endpoint.id,
        message_id=message_id,
        event_type="ping",
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        last_response="",
        created_at=now,
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery


# --- deliveries --------------------------------------------------------------------------------


def list_deliveries(
    actor: Actor, endpoint_id: str, query: DeliveryListQuery, page: PageRequest
) -> tuple[list[WebhookDelivery], bool]:
    """Return one page of an endpoint's deliveries, newest first."""
    endpoint = get_endpoint(actor, endpoint_id)
    filters = [WebhookDelivery.status.in_([s.value for s in query.status])] if query.status else []
    return page_of(WebhookDelivery, page, WebhookDelivery.endpoint_id == endpoint.id, *filters)


def get_delivery(actor: Actor, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    """One delivery of one of the organization's endpoints (404 for any other)."""
    endpoint = get_endpoint(actor, endpoint_id)
    require_usable_id(delivery_id)
    delivery = db.session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    ).scalar_one_or_none()
    if delivery is None:
        raise NotFound(f"No such webhook delivery: {delivery_id!r}.", param="id")
    return delivery


def retry_delivery(actor: Actor, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    """Attempt a delivery again now — a failed one, one still waiting, or one that succeeded.

    Past its 3-day window, a retry is one more attempt: if it fails, the delivery is failed
    again.
    """
    writing(actor)
    actor.require_manager(MANAGE_ENDPOINTS)
    delivery = get_delivery(actor, endpoint_id, delivery_id)
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    if not endpoint.enabled:
        raise Conflict("The endpoint is disabled: enable it to send it events.")
    now = utcnow()
    delivery.status = DeliveryStatus.PENDING.value
    delivery.next_attempt_at = now
    delivery.claim = None
    db.session.commit()
    return delivery


def disabled_endpoints(actor: Actor) -> list[WebhookEndpoint]:
    """The organization's endpoints the service disabled (the dashboard tells the owner)."""
    statement = select(WebhookEndpoint).where(
        WebhookEndpoint.organization_id == actor.organization_id,
        WebhookEndpoint.enabled.is_(False),
        WebhookEndpoint.disabled_reason != "",
    )
    return list(db.session.execute(statement).scalars())
