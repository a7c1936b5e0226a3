"""The dashboard's front door and the Settings item of the main navigation."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask_login import current_user, login_required

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/dashboard",
)


@bp.get("/")
def home():
    """Send people to their inbox, or to sign in."""
    if current_user.is_authenticated:
        return redirect(url_for("approvals.inbox"))
    return redirect(url_for("auth.sign_in"))


@bp.get("/settings")
@login_required
def settings():
    """Settings opens on its first tab: General for the owner and admins; Notifications (their
    own) for every other member."""
    if current_user.role in ("owner", "admin"):
        return redirect(url_for("organizations.general"))
    return redirect(url_for("notifications.index"))
