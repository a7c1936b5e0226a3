"""The notifications API as JSON: the emails the caller wants
(``/v2/members/me/notification_preferences``), the organization's chat and push destinations
(``/v2/notification_destinations``) and what was sent (``/v2/notifications``)."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..approvals.schemas import NoInput
from ..openapi import operation
from ..schemas import DeletedOut, ListQuery
from . import destinations, services
from .schemas import (
    DestinationCreate,
    DestinationList,
    DestinationOut,
    DestinationUpdate,
    NotificationList,
    NotificationListQuery,
    NotificationOut,
    NotificationPreferencesOut,
    NotificationPreferencesUpdate,
)

bp = Blueprint("notifications_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

NOTIFICATIONS = "Notifications"


@bp.get("/members/me/notification_preferences")
@operation(NotificationPreferencesOut, tag=NOTIFICATIONS)
def get_notification_preferences():
    """Retrieve which kinds of email the caller wants (a key: the owner it acts for)."""
    return NotificationPreferencesOut.of(services.get_preferences(current_actor()))


@bp.patch("/members/me/notification_preferences")
@operation(NotificationPreferencesOut, tag=NOTIFICATIONS)
def update_notification_preferences(json: NotificationPreferencesUpdate):
    """Turn kinds of email on or off for the caller."""
    return NotificationPreferencesOut.of(services.update_preferences(current_actor(), json))


@bp.get("/notification_destinations")
@operation(DestinationList, tag=NOTIFICATIONS)
def list_notification_destinations(query: ListQuery):
    """List the organization's chat and push destinations, newest first (owner and admins, or
    a key)."""
    return DestinationList.page(*destinations.list_destinations(current_actor(), query.page()))


@bp.post("/notification_destinations")
@operation(DestinationOut, tag=NOTIFICATIONS, status=201)
def create_notification_destination(json: DestinationCreate):
    """Add a destination: an Apprise URL (kept encrypted, shown masked from now on) and the
    kinds of news it hears of."""
    return DestinationOut.of(destinations.create_destination(current_actor(), json)), 201


@bp.get("/notification_destinations/<destination_id>")
@operation(DestinationOut, tag=NOTIFICATIONS)
def get_notification_destination(destination_id: str):
    """Retrieve a destination (its URL masked)."""
    return DestinationOut.of(destinations.get_destination(current_actor(), destination_id))


@bp.patch("/notification_destinations/<destination_id>")
@operation(DestinationOut, tag=NOTIFICATIONS)
def update_notification_destination(destination_id: str, json: DestinationUpdate):
    """Change a destination's name, URL or kinds, or enable or disable it."""
    found = destinations.update_destination(current_actor(), destination_id, json)
    return DestinationOut.of(found)


@bp.delete("/notification_destinations/<destination_id>")
@operation(DeletedOut, tag=NOTIFICATIONS)
def delete_notification_destination(destination_id: str):
    """Delete a destination (what it has not been sent yet is not sent)."""
    destinations.delete_destination(current_actor(), destination_id)
    return DeletedOut(object="notification_destination", id=destination_id, deleted=True)


@bp.post("/notification_destinations/<destination_id>/test")
@operation(NotificationOut, tag=NOTIFICATIONS, status=201)
def send_notification_test(destination_id: str, json: NoInput):
    """Send the destination a test message now (the worker sends it; its outcome is the
    notification's)."""
    return NotificationOut.of(destinations.send_test(current_actor(), destination_id)), 201


@bp.get("/notifications")
@operation(NotificationList, tag=NOTIFICATIONS)
def list_notifications(query: NotificationListQuery):
    """List the organization's notifications, newest first: emails and chat messages, their
    status, attempts and last error (owner and admins, or a key)."""
    found = destinations.list_notifications(current_actor(), query, query.page())
    return NotificationList.page(*found)
