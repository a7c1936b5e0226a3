"""Settings → Notifications: "My notifications" for every member; the organization's chat and
push destinations, their tests and their recent attempts, and the notifications that failed,
for the owner and admins.

Views are thin: a form, one service call, a page. Who may do what is the services' to say.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from ..dashboard import current_actor, refusal_flashed, save_form
from ..dashboard.forms import validated
from ..errors import DomainError
from ..pagination import PageRequest
from . import destinations, services
from .forms import DestinationForm, PreferencesForm
from .schemas import (
    DestinationCreate,
    DestinationUpdate,
    NotificationListQuery,
    NotificationPreferencesUpdate,
)

bp = Blueprint("notifications", __name__, template_folder="templates")

RECENT = 20


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here is for signed-in members."""


@bp.route("/settings/notifications", methods=["GET", "POST"])
def index():
    """My notifications; for the owner and admins, the destinations and the failures."""
    actor = current_actor()
    form = PreferencesForm(prefix="mine")
    if request.method == "GET":
        form.fill(services.get_preferences(actor))

    def save():
        data = validated(NotificationPreferencesUpdate, form.as_input())
        services.update_preferences(actor, data)

    status = save_form(form, save, "Your notifications were saved.", "notifications.index")
    if not isinstance(status, int):
        return status
    context = {"form": form, "add": DestinationForm(prefix="add")}
    if actor.manages_organization:
        context |= _organization(actor)
    return render_template("notifications/index.html", title="Notifications", **context), status


def _organization(actor) -> dict:
    """What the owner and admins see: the destinations and the notifications in trouble."""
    found, _ = destinations.list_destinations(actor, PageRequest(100))
    return {"destinations": found, "trouble": destinations.in_trouble(actor, RECENT)}


@bp.post("/settings/notifications/destinations")
def create():
    """Add a destination."""
    actor = current_actor()
    add = DestinationForm(prefix="add")
    if add.validate():
        try:
            made = destinations.create_destination(
                actor, validated(DestinationCreate, add.as_input(creating=True))
            )
        except DomainError as error:
            if error.status == 403:
                raise
            flash(error.message, "error")
        else:
            flash(f"The destination {made.name} was added: send it a test.", "info")
            return redirect(url_for("notifications.show", destination_id=made.id), 303)
    form = PreferencesForm(prefix="mine", formdata=None)
    form.fill(services.get_preferences(actor))
    context = {"form": form, "add": add} | _organization(actor)
    return render_template("notifications/index.html", title="Notifications", **context), 400


@bp.route("/settings/notifications/destinations/<destination_id>", methods=["GET", "POST"])
def show(destination_id: str):
    """A destination: change it, test it; its recent attempts."""
    actor = current_actor()
    destination = destinations.get_destination(actor, destination_id)
    form = DestinationForm(prefix="edit")
    if request.method == "GET":
        form.name.data = destination.name
        form.events.data = list(destination.events)
        form.enabled.data = destination.enabled

    def save():
        data = validated(DestinationUpdate, form.as_input(creating=False))
        destinations.update_destination(actor, destination_id, data)

    status = save_form(form, save, "Saved.", "notifications.index")
    if not isinstance(status, int):
        return redirect(url_for("notifications.show", destination_id=destination_id), 303)
    query = NotificationListQuery(limit=RECENT, destination=destination.id)
    recent, _ = destinations.list_notifications(actor, query, query.page())
    return render_template(
        "notifications/show.html",
        title=destination.name,
        destination=destination,
        form=form,
        recent=recent,
    ), status


@bp.post("/settings/notifications/destinations/<destination_id>/<action>")
def act(destination_id: str, action: str):
    """Send a test message, enable, disable or delete a destination."""
    actor = current_actor()
    back = url_for("notifications.show", destination_id=destination_id)
    with refusal_flashed():
        if action == "test":
            destinations.send_test(actor, destination_id)
            flash("A test message was queued: its outcome appears below once it is sent.", "info")
        elif action in ("enable", "disable"):
            update = DestinationUpdate(enabled=action == "enable")
            destinations.update_destination(actor, destination_id, update)
            flash(f"The destination was {action}d.", "info")
        elif action == "delete":
            destinations.delete_destination(actor, destination_id)
            flash("The destination was deleted.", "info")
            back = url_for("notifications.index")
        else:
            abort(404)
    return redirect(back, 303)
