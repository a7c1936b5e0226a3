"""Settings → Webhooks (owner and admins): endpoints, their secret shown once, tests, recent
deliveries with their outcome, retries, enabling and disabling.

Views are thin: a form, one service call, a page. Who may do what is the services' to say.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required
from sqlalchemy.exc import SQLAlchemyError

from ..dashboard import (
    current_actor,
    fresh_nonce,
    nonce_is_fresh,
    refusal_flashed,
    shown_once,
    signed_in,
)
from ..dashboard.forms import validated
from ..errors import DomainError
from ..extensions import discard_work
from ..pagination import PageRequest
from . import services
from .forms import EndpointForm, NonceForm, endpoint_input
from .schemas import DeliveryListQuery, EndpointCreate, EndpointUpdate

bp = Blueprint("webhooks", __name__, template_folder="templates")

NONCE = "webhooks.nonce"
RECENT = 20


@bp.before_request
@login_required
def _managers_only() -> None:
    """Settings are for the owner and admins."""
    current_actor().require_manager(services.MANAGE_ENDPOINTS)


def disabled_endpoints_notice() -> dict:
    """For the layout: endpoints the service disabled, to tell the owner and admins."""
    user = signed_in()
    if user is None or user.role not in ("owner", "admin") or request.path.startswith("/v2"):
        return {}
    try:
        return {"disabled_webhooks": services.disabled_endpoints(current_actor())}
    except SQLAlchemyError:  # an error page while the database is away: say nothing
        discard_work()
        return {}


def _reveal(endpoint, secret: str, what: str):
    return shown_once("webhooks/secret.html", endpoint=endpoint, secret=secret, what=what)


def _used_again():
    flash("That form was already used: a secret is shown only once.", "info")
    return redirect(url_for("webhooks.index"), 303)


@bp.route("/settings/webhooks", methods=["GET", "POST"])
def index():
    """The endpoints; add one."""
    actor = current_actor()
    form = EndpointForm()
    status = 200
    if request.method == "POST":
        if not nonce_is_fresh(NONCE, form.nonce.data):
            return _used_again()
        if form.validate():
            try:
                data = validated(EndpointCreate, endpoint_input(form))
                endpoint, secret = services.create_endpoint(actor, data)
            except DomainError as error:
                flash(error.message, "error")
                status = 400
            else:
                return _reveal(endpoint, secret, "Your new endpoint's signing secret")
        else:
            status = 400
    endpoints, _ = services.list_endpoints(actor, PageRequest(100))
    form.nonce.data = fresh_nonce(NONCE)
    return render_template(
        "webhooks/index.html", title="Webhooks", form=form, endpoints=endpoints
    ), status


@bp.route("/settings/webhooks/<endpoint_id>", methods=["GET", "POST"])
def show(endpoint_id: str):
    """An endpoint: change it, test it, rotate its secret; its recent deliveries."""
    actor = current_actor()
    endpoint = services.get_endpoint(actor, endpoint_id)
    form = EndpointForm()
    status = 200
    if request.method == "GET":
        form.url.data = endpoint.url
        form.description.data = endpoint.description
        form.events.data = ", ".join(endpoint.events)
        form.enabled.data = endpoint.enabled
    elif form.validate():
        try:
            data = validated(EndpointUpdate, endpoint_input(form))
            services.update_endpoint(actor, endpoint_id, data)
        except DomainError as error:
            flash(error.message, "error")
            status = 400
        else:
            flash("Saved.", "info")
            return redirect(url_for("webhooks.show", endpoint_id=endpoint_id), 303)
    else:
        status = 400
    query = DeliveryListQuery(limit=RECENT)
    deliveries, _ = services.list_deliveries(actor, endpoint_id, query, query.page())
    rotate = NonceForm()
    rotate.nonce.data = fresh_nonce(NONCE)
    return render_template(
        "webhooks/show.html",
        title=endpoint.url,
        endpoint=endpoint,
        form=form,
        rotate=rotate,
        deliveries=deliveries,
    ), status


@bp.post("/settings/webhooks/<endpoint_id>/rotate")
def rotate(endpoint_id: str):
    """A new secret, shown once; the previous one signs beside it for 24 hours."""
    form = NonceForm()
    if not nonce_is_fresh(NONCE, form.nonce.data):
        return _used_again()
    endpoint, secret = services.rotate_secret(current_actor(), endpoint_id)
    return _reveal(
        endpoint, secret, "The endpoint's new signing secret (the previous one signs for 24 hours)"
    )


@bp.post("/settings/webhooks/<endpoint_id>/<action>")
def act(endpoint_id: str, action: str):
    """Send a test event, enable, disable or delete an endpoint."""
    actor = current_actor()
    back = url_for("webhooks.show", endpoint_id=endpoint_id)
    with refusal_flashed():
        if action == "test":
            services.send_test(actor, endpoint_id)
            flash("A test event (ping) was queued: it appears below once it is sent.", "info")
        elif action in ("enable", "disable"):
            update = EndpointUpdate(enabled=action == "enable")
            services.update_endpoint(actor, endpoint_id, update)
            flash(f"The endpoint was {action}d.", "info")
        elif action == "delete":
            services.delete_endpoint(actor, endpoint_id)
            flash("The endpoint was deleted.", "info")
            back = url_for("webhooks.index")
        else:
            abort(404)
    return redirect(back, 303)


@bp.post("/settings/webhooks/<endpoint_id>/deliveries/<delivery_id>/retry")
def retry(endpoint_id: str, delivery_id: str):
    """Attempt a delivery again now."""
    with refusal_flashed():
        services.retry_delivery(current_actor(), endpoint_id, delivery_id)
        flash("The delivery will be attempted again in a moment.", "info")
    return redirect(url_for("webhooks.show", endpoint_id=endpoint_id), 303)
