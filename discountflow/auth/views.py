"""The dashboard's sign-in and sign-out, and Settings → API Keys (the owner's only).

Views are thin: a form, one service call, a page. Every rule (who may manage keys, what a key
slot shows) lives in ``services.py``.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from ..dashboard import current_actor, fresh_nonce, nonce_is_fresh, shown_once
from . import services
from .forms import GRACE_CHOICES, SLOTS, KeyForm, RollKeyForm, SignInForm, SignOutForm
from .services import SESSION_ID

bp = Blueprint("auth", __name__, template_folder="templates")

SIGN_IN_FAILED = "The email or password is incorrect."
KEY_NONCE = "api_key_form"


# --- signing in --------------------------------------------------------------------------------


def safe_next(target: str | None) -> str | None:
    """Return ``target`` if it is a path on this site, else ``None`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(ch) < 32 for ch in target):
        return None
    return target


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Sign in with (the organization,) email and password; one message for every failure."""
    form = SignInForm()
    choose = services.organizations_to_choose_from()
    if form.validate_on_submit():
        signed_in = services.sign_in(
            form.email.data,
            form.password.data,
            organization=(form.organization.data or "").strip() or None,
            client_address=request.remote_addr or "",
        )
        if signed_in is not None:
            user, session_id = signed_in
            target = safe_next(form.next.data) or url_for("approvals.inbox")
            session.clear()  # a fresh session: nothing from before signing in carries over
            login_user(user)
            session[SESSION_ID] = session_id
            session.permanent = True
            return redirect(target, 303)
        flash(SIGN_IN_FAILED, "error")
        return render_template("auth/sign_in.html", form=form, choose=choose), 401
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
        form.organization.data = request.args.get("organization", "")[:64]
    status = 400 if form.errors else 200
    return render_template("auth/sign_in.html", form=form, choose=choose), status


@bp.post("/sign-out")
def sign_out():
    """Sign out: this session ends on the server, so a copy of its cookie opens nothing."""
    SignOutForm()  # the CSRF token was checked before the view
    services.end_session(session.get(SESSION_ID))
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"), 303)


@bp.post("/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    """Sign out on every device at once."""
    SignOutForm()
    services.sign_out_everywhere(current_actor())
    logout_user()
    session.clear()
    flash("You are signed out everywhere.", "info")
    return redirect(url_for("auth.sign_in"), 303)


# --- Settings → API Keys (the owner only) ------------------------------------------------------


def _owner_only() -> None:
    """The tab does not exist for anyone but the owner: 404, as for any unknown page."""
    if not current_user.is_owner:
        abort(404)


@bp.get("/settings/api-keys")
@login_required
def api_keys():
    """The API tab: each slot's status, last use, dates, last four; generate, roll, revoke."""
    _owner_only()
    slots = services.key_slots(current_actor())
    nonce = fresh_nonce(KEY_NONCE)
    return render_template(
        "auth/api_keys.html",
        title="API Keys",
        slots=slots,
        nonce=nonce,
        key_form=KeyForm(),
        roll_form=RollKeyForm(),
        grace_choices=GRACE_CHOICES,
        environment=current_app.config["DISCOUNTFLOW_ENV"],
    )


def _reveal(api_key, key: str, previous: str):
    """Show a new key once."""
    return shown_once("auth/api_key_created.html", api_key=api_key, key=key, previous=previous)


def _used_form_again():
    flash("That form was already used. A key is shown only once and is not shown again.", "info")
    return redirect(url_for("auth.api_keys"), 303)


@bp.post("/settings/api-keys/generate")
@login_required
def generate_key():
    """Generate a slot's key; the slot's previous key stops working at once."""
    _owner_only()
    form = KeyForm()
    if not form.validate() or not nonce_is_fresh(KEY_NONCE, form.nonce.data):
        return _used_form_again()
    api_key, key = services.generate_key(current_actor(), read_only=form.slot.data == "read_only")
    return _reveal(api_key, key, "Any previous key of this slot stopped working.")


@bp.post("/settings/api-keys/roll")
@login_required
def roll_key():
    """Issue a new key and keep the current one working for a grace period."""
    _owner_only()
    form = RollKeyForm()
    if not form.validate() or not nonce_is_fresh(KEY_NONCE, form.nonce.data):
        return _used_form_again()
    grace = timedelta(hours=int(form.grace_hours.data))
    api_key, key = services.roll_key(
        current_actor(), read_only=form.slot.data == "read_only", grace=grace
    )
    label = dict(GRACE_CHOICES)[form.grace_hours.data]
    return _reveal(api_key, key, f"The previous key keeps working for {label}, then stops.")


@bp.get("/settings/api-keys/revoke")
@login_required
def confirm_revoke():
    """Ask before revoking: it is permanent."""
    _owner_only()
    form = KeyForm(slot=request.args.get("slot", "full"))
    if form.slot.data not in dict(SLOTS):
        abort(404)
    return render_template("auth/api_key_revoke.html", form=form)


@bp.post("/settings/api-keys/revoke")
@login_required
def revoke_key():
    """Revoke a slot's keys at once, permanently."""
    _owner_only()
    form = KeyForm()
    if not form.validate():
        abort(400)
    services.revoke_key(current_actor(), read_only=form.slot.data == "read_only")
    flash("The API key was revoked. Requests with it now get the authentication error.", "info")
    return redirect(url_for("auth.api_keys"), 303)
