"""The web dashboard's shell: sign-in sessions, CSRF on every form, the layout and its helpers.

Each feature serves its own pages (``auth/views.py``, ``approvals/views.py``) on the same
services as the API; this package binds what they share. The dashboard signs people in with
email and password only: an API key never opens a session (no request loader is installed,
and ``/v2`` has no session at all, see ``api.SessionInterface``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import humanize
from flask import Flask, request
from flask_login import current_user
from markupsafe import Markup

from ..currencies import MINOR_UNITS
from ..database import utcnow
from ..errors import is_api_request
from ..extensions import csrf, db, login_manager
from ..schemas import percent_of


def init_app(app: Flask) -> None:
    """Bind sessions and CSRF, register the dashboard's blueprints and template helpers."""
    from ..approvals.views import bp as approvals_bp
    from ..auth.models import User
    from ..auth.views import bp as auth_bp
    from .views import bp as dashboard_bp

    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, user_id)

    csrf.init_app(app)

    @app.before_request
    def protect_forms() -> None:
        # The Bearer-token API is stateless and takes no cookies: it needs no CSRF token.
        if not is_api_request():
            csrf.protect()

    @app.after_request
    def no_store_for_people(response):
        # Pages show an organization's data: never keep them in a shared or browser cache.
        if not is_api_request() and not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                "form-action 'self'; base-uri 'none'",
            )
        return response

    app.register_blueprint(dashboard_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(approvals_bp)
    app.add_template_filter(timeago)
    app.add_template_filter(money)
    app.add_template_filter(percent)
    app.add_template_filter(humanize_status)
    app.add_template_filter(major_units)
    app.add_template_global(percent_of)
    app.context_processor(_navigation)


def _navigation() -> dict:
    user = current_user if current_user and current_user.is_authenticated else None
    return {
        "signed_in": user,
        "is_owner": bool(user and user.is_owner),
        "manages": bool(user and user.role in ("owner", "admin")),
    }


def timeago(value: datetime | None, never: str = "Never") -> Markup:
    """``3 minutes ago``, with the exact UTC time on hover; ``Never`` for no time."""
    if value is None:
        return Markup("<span>{}</span>").format(never)
    value = value.astimezone(UTC)
    text = humanize.naturaltime(value, when=utcnow())  # "3 minutes ago", "in a month"
    exact = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        value.isoformat(timespec="seconds").replace("+00:00", "Z"), exact, text
    )


def money(amount: int | None, currency: str) -> str:
    """Integer minor units as ``12,345.60 USD`` (``JPY`` has no decimals, ``KWD`` three)."""
    if amount is None:
        return ""
    digits = MINOR_UNITS.get(currency, 2)
    major = Decimal(amount).scaleb(-digits)
    return f"{major:,.{digits}f} {currency}"


def major_units(amount: int, currency: str) -> str:
    """Integer minor units as a plain amount to edit: ``125050`` USD → ``1250.50``."""
    return f"{Decimal(amount).scaleb(-MINOR_UNITS.get(currency, 2)):f}"


def percent(value: float | None) -> str:
    """``12.5 %``; whole numbers without decimals."""
    if value is None:
        return ""
    return f"{value:g} %"


def humanize_status(value: str) -> str:
    """``changes_requested`` → ``Changes requested``."""
    return value.replace("_", " ").capitalize()
