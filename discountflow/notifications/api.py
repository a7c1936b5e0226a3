"""``/v2/members/me/notification_preferences`` as JSON: the emails the caller wants."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..openapi import operation
from . import services
from .schemas import NotificationPreferencesOut, NotificationPreferencesUpdate

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
