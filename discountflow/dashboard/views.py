"""The dashboard's front door and its error pages."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

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


def error_page(status: int, title: str, message: str):
    """An error as a page of the dashboard, in its layout."""
    return render_template("dashboard/error.html", status=status, title=title, message=message)
