"""The organization's chat and push destinations, and the notifications it sent: the rules
every surface shares.

The owner and admins (and the owner's full-access key) manage destinations; read-only keys
read them. A destination's URL is checked (``chat.check``), kept sealed, and never returned,
logged or written into an event: only its masked form is.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from ..actors import Actor, fetch, require_room, writing
from ..audit.services import EventLog
from ..database import new_id, require_usable_id, utcnow
from ..errors import Conflict, NotFound
from ..extensions import db
from ..pagination import PageRequest, page_of
from ..sealing import UnreadableSecret
from ..webhooks.services import destination_rules
from . import chat
from .models import Channel, Notification, NotificationDestination, NotificationStatus
from .schemas import DestinationCreate, DestinationUpdate, NotificationListQuery

MANAGE = "manage notification destinations"
READ = "read notification destinations"
MAX_DESTINATIONS = 16  # per organization, as webhook endpoints
TEST = "test"  # the kind of a destination's test message


def list_destinations(
    actor: Actor, page: PageRequest
) -> tuple[list[NotificationDestination], bool]:
    """One page of the organization's destinations, newest first."""
    actor.require_manager(READ)
    scope = NotificationDestination.organization_id == actor.organization_id
    return page_of(NotificationDestination, page, scope)


def get_destination(actor: Actor, destination_id: str) -> NotificationDestination:
    actor.require_manager(READ)
    return fetch(actor, NotificationDestination, destination_id, "notification destination")


def create_destination(actor: Actor, data: DestinationCreate) -> NotificationDestination:
    """Add a destination (``notification_destination.created``, without its URL)."""
    actor.require_write()
    actor.require_manager(MANAGE)
    # Checked (its host resolved, in production) before the write begins: a slow DNS answer
    # must not hold SQLite's write lock.
    checked = chat.check(data.url, destination_rules())
    writing(actor)
    require_room(
        actor,
        NotificationDestination,
        MAX_DESTINATIONS,
        f"An organization has at most {MAX_DESTINATIONS} notification destinations: delete "
        "one it no longer uses first.",
    )
    now = utcnow()
    destination = NotificationDestination(
        id=new_id("ntd"),
        organization_id=actor.organization_id,
        name=data.name,
        service=checked.service,
        url=chat.seal(checked.url),
        masked_url=checked.masked,
        events=[kind.value for kind in data.events],
        enabled=data.enabled,
        last_error="",
        created_at=now,
        updated_at=now,
    )
    db.session.add(destination)
    EventLog(actor, now).add(
        "notification_destination.created",
        destination=destination.id,
        service=destination.service,
        events=destination.events,
    )
    db.session.commit()
    return destination


def update_destination(
    actor: Actor, destination_id: str, data: DestinationUpdate
) -> NotificationDestination:
    """Change a destination: ``notification_destination.updated`` (with the fields, never the
    URL), ``.enabled`` or ``.disabled``."""
    actor.require_write()
    actor.require_manager(MANAGE)
    given = "url" in data.model_fields_set
    checked = chat.check(data.url, destination_rules()) if given else None  # (as above)
    writing(actor)
    destination = get_destination(actor, destination_id)
    changed = []
    if checked is not None:
        if checked.url != _saved_url(destination):
            destination.url = chat.seal(checked.url)
            destination.masked_url = checked.masked
            destination.service = checked.service
            destination.last_error = ""
            changed.append("url")
    if "events" in data.model_fields_set:
        events = [kind.value for kind in data.events]
        if events != destination.events:
            destination.events = events
            changed.append("events")
    for name in ("name", "enabled"):
        if name in data.model_fields_set and getattr(data, name) != getattr(destination, name):
            setattr(destination, name, getattr(data, name))
            changed.append(name)
    if changed:
        now = utcnow()
        destination.updated_at = now
        events = EventLog(actor, now)
        fields = [name for name in changed if name != "enabled"]
        if fields:
            events.add(
                "notification_destination.updated", destination=destination.id, fields=fields
            )
        if "enabled" in changed:
            state = "enabled" if destination.enabled else "disabled"
            events.add(f"notification_destination.{state}", destination=destination.id)
    db.session.commit()
    return destination


def _saved_url(destination: NotificationDestination) -> str | None:
    """The destination's URL; ``None`` if this ``SECRET_KEY`` cannot read it (the URL is then
    entered again, as the refusal at its sends says)."""
    try:
        return chat.unseal(destination.url)
    except UnreadableSecret:
        return None


def delete_destination(actor: Actor, destination_id: str) -> str:
    """Delete a destination and its notifications (pending ones are not sent)."""
    writing(actor)
    actor.require_manager(MANAGE)
    destination = get_destination(actor, destination_id)
    EventLog(actor, utcnow()).add(
        "notification_destination.deleted", destination=destination.id, service=destination.service
    )
    db.session.delete(destination)
    db.session.commit()
    return destination_id


def send_test(actor: Actor, destination_id: str) -> Notification:
    """Queue a test message for one destination, sent by the worker at once."""
    writing(actor)
    actor.require_manager(MANAGE)
    destination = get_destination(actor, destination_id)
    if not destination.enabled:
        raise Conflict("The destination is disabled: enable it to send it messages.")
    now = utcnow()
    event = EventLog(actor, now).add("notification_destination.tested", destination=destination.id)
    event.id = new_id("evt")
    notification = Notification(
        id=new_id("ntf"),
        organization_id=actor.organization_id,
        idempotency_key=f"{event.id}:{destination.id}:{Channel.CHAT.value}",
        event_id=event.id,
        event_type=event.type,
        destination_id=destination.id,
        kind=TEST,
        channel=Channel.CHAT.value,
        status=NotificationStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )
    db.session.add(notification)
    db.session.commit()
    return notification


def list_notifications(
    actor: Actor, query: NotificationListQuery, page: PageRequest
) -> tuple[list[Notification], bool]:
    """One page of the organization's notifications, newest first: what was sent, to whom,
    and why an attempt failed (the owner and admins)."""
    actor.require_manager("read the organization's notifications")
    filters = [Notification.organization_id == actor.organization_id]
    if query.status:
        filters.append(Notification.status.in_([each.value for each in query.status]))
    if query.channel is not None:
        filters.append(Notification.channel == query.channel.value)
    if query.destination is not None:
        require_usable_id(query.destination, "destination")
        try:
            destination = get_destination(actor, query.destination)
        except NotFound as error:
            raise NotFound(error.message, param="destination") from None
        filters.append(Notification.destination_id == destination.id)
    return page_of(Notification, page, *filters)


def in_trouble(actor: Actor, limit: int) -> list[Notification]:
    """The organization's newest notifications whose last attempt failed: failed for good, or
    pending after a failed attempt (the owner and admins)."""
    actor.require_manager("read the organization's notifications")
    failed = or_(
        Notification.status == NotificationStatus.FAILED.value,
        and_(Notification.status == NotificationStatus.PENDING.value, Notification.attempts > 0),
    )
    return list(
        db.session.execute(
            select(Notification)
            .where(Notification.organization_id == actor.organization_id, failed)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(limit)
        ).scalars()
    )


class Listeners:
    """The organization's enabled destinations that hear of a kind of news, read once per
    organization (the outbox's and the reminders' writers)."""

    def __init__(self, session) -> None:
        self.session = session
        self.enabled: dict[str, list[NotificationDestination]] = {}

    def of(self, organization_id: str, kind: str) -> list[str]:
        """The ids of the organization's enabled destinations that hear of ``kind``."""
        if organization_id not in self.enabled:
            self.enabled[organization_id] = list(
                self.session.execute(
                    select(NotificationDestination).where(
                        NotificationDestination.organization_id == organization_id,
                        NotificationDestination.enabled.is_(True),
                    )
                ).scalars()
            )
        return [each.id for each in self.enabled[organization_id] if kind in each.events]
