"""The web dashboard's shell: sign-in sessions, CSRF on every form, the layout and its helpers.

Each feature serves its own pages (``auth/views.py``, ``approvals/views.py`` …) on the same
services as the API and registers them itself; this package binds what they share and gives
their views the helpers below. The dashboard signs people in with email and password only: an
API key never opens a session (no request loader is installed, and ``/v2`` has no session at
all, see ``api.SessionInterface``).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import humanize
from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from markupsafe import Markup
from pydantic import BaseModel

from ..actors import Actor, Surface
from ..auth.services import SESSION_ID, session_member
from ..currencies import format_major_units, format_money, format_percent
from ..database import utcnow
from ..errors import DomainError, is_api_request
from ..extensions import csrf, login_manager
from ..organizations.models import User
from ..schemas import percent_of
from .forms import validated


def init_app(app: Flask) -> None:
    """Bind sessions and CSRF, register the shell's pages and the template helpers."""
    from .views import bp

    login_manager.init_app(app)
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Sign in to continue."
    login_manager.session_protection = "basic"
    login_manager.user_loader(_load_user)
    csrf.init_app(app)
    app.before_request(_protect_forms)
    app.after_request(_no_store_for_people)
    app.register_blueprint(bp)
    for template_filter in (timeago, money, percent, humanize_status, major_units, duration):
        app.add_template_filter(template_filter)
    app.add_template_global(percent_of)
    app.context_processor(_navigation)


def _load_user(user_id: str) -> User | None:
    """The member of the cookie's dashboard session, while that session is open on the server.

    While the database is away (``g.database_unavailable``, set by the 503's handler) the page
    that says so is shown to nobody in particular: loading the member there would fail again
    and turn the 503 into a 500.
    """
    if g.get("database_unavailable"):
        return None
    lifetime = current_app.permanent_session_lifetime
    return session_member(user_id, session.get(SESSION_ID), lifetime)


def _protect_forms() -> None:
    # The Bearer-token API is stateless and takes no cookies: it needs no CSRF token.
    if not is_api_request():
        csrf.protect()


def _no_store_for_people(response):
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


def signed_in() -> Any:
    """The signed-in member, for the layout; nobody while the database is away: the member the
    view had read may need the database again to be shown (the failed request's work was
    undone), and the page that says so must not fail in turn."""
    if g.get("database_unavailable"):
        return None
    return current_user if current_user and current_user.is_authenticated else None


def _navigation() -> dict:
    user = signed_in()
    return {
        "signed_in": user,
        "is_owner": bool(user and user.is_owner),
        "manages": bool(user and user.role in ("owner", "admin")),
    }


# --- helpers for the features' views -----------------------------------------------------------


def csv_download(filename: str, write: Callable[[io.StringIO], Any]) -> Response:
    """A CSV file to download: what ``write`` writes, named ``filename``."""
    out = io.StringIO()
    write(out)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def current_actor() -> Actor:
    """The signed-in member, acting from the dashboard."""
    return Actor.for_user(current_user, Surface.DASHBOARD)


def fresh_nonce(name: str) -> str:
    """A one-time token for a form that reveals a secret, remembered in the session."""
    nonce = secrets.token_urlsafe(16)
    session[name] = nonce
    return nonce


def nonce_is_fresh(name: str, presented: str | None) -> bool:
    """Whether a form's one-time token is the one issued (and spend it): a reload or going
    back must not issue or show a second secret."""
    expected = session.pop(name, None)
    return expected is not None and secrets.compare_digest(expected, presented or "")


def shown_once(template: str, **context: Any) -> Response:
    """A page that shows a secret once: never stored, and nothing in its URL repeats it."""
    response = current_app.make_response(render_template(template, **context))
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Pragma"] = "no-cache"
    return response


def list_query(model: type[BaseModel], page_size: int, query: dict[str, Any]):
    """A list query for a page of ``page_size`` rows, with the request's cursors."""
    query = {"limit": page_size, **query}
    for cursor in ("starting_after", "ending_before"):
        if request.args.get(cursor):
            query[cursor] = request.args[cursor]
    return validated(model, query)


def save_form(form: Any, save: Callable[[], Any], saved: str, endpoint: str) -> Response | int:
    """Save a posted form: a redirect to ``endpoint`` (flashing ``saved``) when ``save()``
    worked; otherwise the status to show the form again with (200, or 400 when refused)."""
    if form.validate_on_submit():
        try:
            save()
        except DomainError as error:
            flash(error.message, "error")
            return 400
        flash(saved, "info")
        return redirect(url_for(endpoint), 303)
    return 400 if form.errors or request.method == "POST" else 200


@contextmanager
def refusal_flashed() -> Iterator[None]:
    """A button's service call: a refusal is flashed on the page it goes back to (a 403 or 404
    stays the page's own answer, as for any page)."""
    try:
        yield
    except DomainError as error:
        if error.status in (403, 404):
            raise
        flash(error.message, "error")


def pager(ids: list[str], query: Any, has_more: bool) -> dict[str, str | None]:
    """The cursors of the pages newer and older than the page of ``ids`` (``None``: none)."""
    if query.ending_before is not None:  # went back: older pages exist, newer ones if more
        newer, older = has_more, True
    else:
        newer, older = query.starting_after is not None, has_more
    return {
        "newer": ids[0] if ids and newer else None,
        "older": ids[-1] if ids and older else None,
    }


# --- template filters --------------------------------------------------------------------------


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
    return "" if amount is None else format_money(amount, currency)


def major_units(amount: int, currency: str) -> str:
    """Integer minor units as a plain amount to edit: ``125050`` USD → ``1250.50``."""
    return format_major_units(amount, currency)


def percent(value: float | None) -> str:
    """``12.5 %``; whole numbers without decimals."""
    return "" if value is None else format_percent(value)


def duration(seconds: int | None) -> str:
    """``45 min``, ``5.5 h``, ``3.2 days``; a dash for no time at all."""
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def humanize_status(value: str) -> str:
    """``changes_requested`` → ``Changes requested``."""
    return value.replace("_", " ").capitalize()
