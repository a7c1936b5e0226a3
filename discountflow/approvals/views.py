"""The dashboard's approvals: the inbox, lists, an approval's page, the request form, actions,
and Settings → Approval levels.

Views are thin: a form, one service call, a page. What a person may do is what
``services.allowed_actions`` says; a forged request is refused by the action itself anyway.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..dashboard import csv_download, current_actor, list_query, money, pager, save_form
from ..dashboard.forms import CURRENCY_CHOICES, to_minor_units, to_percent, validated
from ..errors import DomainError
from ..organizations.services import member_names
from ..pagination import PageRequest
from ..products.services import active_products, products_for_lines
from . import levels as approval_levels
from . import queries, services
from .csv_files import export_approvals
from .forms import (
    MAX_LINES,
    ApprovalForm,
    CommentForm,
    LevelForm,
    approval_input,
    fill_from,
    line_items_of,
)
from .models import ApprovalStatus
from .schemas import (
    ApprovalCreate,
    ApprovalListQuery,
    ApprovalUpdate,
    CommentInput,
    DecisionInput,
    LevelCreate,
    LevelUpdate,
    LineItemInput,
)

bp = Blueprint("approvals", __name__, template_folder="templates")

PAGE_SIZE = 20
ACTIONS = {
    "submit": "submitted",
    "approve": "approved",
    "reject": "rejected",
    "request_changes": "sent back for changes",
    "recall": "recalled to draft",
    "cancel": "canceled",
}


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here is for signed-in members."""


def _list_page(title: str, query: dict, **extra):
    actor = current_actor()
    parsed = list_query(ApprovalListQuery, PAGE_SIZE, query)
    views, has_more = queries.list_approvals(actor, parsed, parsed.page())
    return render_template(
        "approvals/list.html",
        title=title,
        views=views,
        names=member_names(actor, (view.approval.requested_by_id for view in views)),
        **pager([view.approval.id for view in views], parsed, has_more),
        **extra,
    )


@bp.get("/inbox")
def inbox():
    """Approvals awaiting my decision."""
    return _list_page(
        "Awaiting my decision",
        {"awaiting_decision_by": current_user.id},
        is_approver=current_user.approval_level_id is not None,
        inbox=True,
    )


def _list_filters() -> tuple[list[str], str, dict]:
    """The approvals list's filters in the query string: statuses and a customer."""
    statuses = [status for status in request.args.getlist("status") if status]
    customer = request.args.get("customer", "").strip()
    query: dict = {"status": statuses}
    if customer:
        query["customer"] = customer
    return statuses, customer, query


@bp.get("/approvals")
def index():
    """All the approvals I may see, filtered by status and customer."""
    statuses, customer, query = _list_filters()
    return _list_page(
        "Approvals",
        query,
        statuses=[status.value for status in ApprovalStatus],
        chosen=set(statuses),
        customer=customer,
        filters=query,
    )


@bp.get("/approvals/export.csv")
def export_file():
    """The approvals of the list as filtered (every page), one row per line item, as CSV."""
    actor = current_actor()
    _, _, query = _list_filters()
    listed = validated(ApprovalListQuery, query)
    return csv_download(
        f"approvals-{date.today().isoformat()}.csv",
        lambda out: export_approvals(actor, listed, out),
    )


# Up to this many active products, each line picks its product from a plain select; beyond,
# it takes a SKU with (the first DATALIST_LIMIT of) the book as the browser's suggestions.
SELECT_LIMIT = 300
DATALIST_LIMIT = 1000


def _price_book(actor) -> dict:
    """The active products the form offers, with their list prices, and its other choices."""
    products = active_products(actor, limit=DATALIST_LIMIT + 1)
    select = len(products) <= SELECT_LIMIT
    products = products[:DATALIST_LIMIT]
    return {
        "products": products,
        "prices": {  # SKU → currency → the list price as shown
            product.sku: {p.currency: money(p.unit_list_price, p.currency) for p in product.prices}
            for product in products
        },
        "select": select,
        "custom_allowed": services.custom_lines_allowed(actor),
    }


def _render_form(form: ApprovalForm, view=None, status: int = 200):
    if not form.line_items.entries or not form.line_items.entries[-1].form.is_blank():
        if len(form.line_items.entries) < MAX_LINES:
            form.line_items.append_entry()
    actor = current_actor()
    book = _price_book(actor)
    may_submit = view is None or "submit" in services.allowed_actions(actor, view)
    return render_template(
        "approvals/form.html", form=form, view=view, book=book, may_submit=may_submit
    ), status


def _add_line(form: ApprovalForm, view=None):
    """The form again with a blank line; with what it could not hold said (not dropped)."""
    if form.line_items.refusal:
        flash(form.line_items.refusal, "error")
        return _render_form(form, view, 400)
    return _render_form(form, view)


@bp.route("/approvals/new", methods=["GET", "POST"])
def new():
    """Ask for a discount: save a draft, or submit at once."""
    form = ApprovalForm()
    if request.method == "POST" and request.form.get("action") == "add_line":
        return _add_line(form)
    if form.validate_on_submit():
        try:
            data = validated(
                ApprovalCreate,
                {**approval_input(form), "submit": request.form.get("action") == "submit"},
            )
            view = services.create_approval(current_actor(), data)
        except DomainError as error:
            flash(error.message, "error")
            return _render_form(form, status=400)
        flash(f"Request {ACTIONS['submit'] if data.submit else 'saved as a draft'}.", "info")
        return redirect(url_for("approvals.show", approval_id=view.approval.id), 303)
    return _render_form(form, status=400 if form.errors else 200)


@bp.route("/approvals/<approval_id>/edit", methods=["GET", "POST"])
def edit(approval_id: str):
    """Edit a draft or a request sent back for changes; save, or save and resubmit."""
    actor = current_actor()
    view = queries.get_approval(actor, approval_id)
    if "edit" not in services.allowed_actions(actor, view):
        abort(404 if request.method == "GET" else 403)
    form = ApprovalForm()
    if request.method == "GET":
        named = {item.product_id for item in view.line_items if item.product_id is not None}
        current = {p.id: p.sku for p in products_for_lines(actor, named, ())}
        fill_from(form, view, current)
        return _render_form(form, view)
    if request.form.get("action") == "add_line":
        return _add_line(form, view)
    if form.validate_on_submit():
        try:
            data = validated(ApprovalUpdate, approval_input(form))
            if request.form.get("action") == "submit":
                services.update_and_submit(actor, approval_id, data)
            else:
                services.update_approval(actor, approval_id, data)
        except DomainError as error:
            flash(error.message, "error")
            return _render_form(form, view, 400)
        flash(
            "Request resubmitted." if request.form.get("action") == "submit" else "Saved.", "info"
        )
        return redirect(url_for("approvals.show", approval_id=approval_id), 303)
    return _render_form(form, view, 400)


@bp.post("/approvals/preview")
def preview():
    """The route the request being typed would take (the form's live preview)."""
    form = ApprovalForm()
    if form.line_items.refusal:
        return render_template("approvals/_route.html", route=None, problem=form.line_items.refusal)
    try:
        items = [validated(LineItemInput, item) for item in line_items_of(form)]
        lines, route = services.preview_route(current_actor(), form.currency.data, items)
    except DomainError as error:
        return render_template("approvals/_route.html", route=None, problem=error.message)
    return render_template(
        "approvals/_route.html",
        route=route,
        lines=lines,
        currency=form.currency.data,
        problem=None,
    )


@bp.get("/approvals/<approval_id>")
def show(approval_id: str):
    """An approval: line items, totals, steps, decisions, comments and its audit trail."""
    actor = current_actor()
    view = queries.get_approval(actor, approval_id)
    everything = PageRequest(100)
    decisions, _ = queries.list_decisions(actor, approval_id, everything)
    comments, _ = queries.list_comments(actor, approval_id, everything)
    events, _ = queries.list_approval_events(actor, approval_id, everything)
    people = [view.approval.requested_by_id]
    people += [step.decided_by_id for step in view.steps]
    people += [row.actor_user_id for row in (*decisions, *comments, *events)]
    return render_template(
        "approvals/show.html",
        view=view,
        allowed=services.allowed_actions(actor, view),
        decisions=decisions[::-1],
        comments=comments[::-1],
        events=events[::-1],
        names=member_names(actor, people),
        comment_form=CommentForm(),
        waits_for_nobody=queries.waits_for_nobody(view.approval),
    )


@bp.post("/approvals/<approval_id>/actions/<action>")
def act(approval_id: str, action: str):
    """Approve, reject, request changes, submit, recall or cancel (the service decides who may)."""
    if action not in ACTIONS:
        abort(404)
    form = CommentForm()
    if not form.validate():
        abort(400)
    text = (form.comment.data or "").strip()
    # The API's own rules for a comment's text; whether one is required is the service's.
    comment = validated(DecisionInput, {"comment": text} if text else {}).comment
    actor = current_actor()
    if action in ("approve", "reject", "request_changes", "cancel"):
        getattr(services, action)(actor, approval_id, comment)
    else:
        getattr(services, action)(actor, approval_id)
    flash(f"The request was {ACTIONS[action]}.", "info")
    return redirect(url_for("approvals.show", approval_id=approval_id), 303)


@bp.post("/approvals/<approval_id>/delete")
def delete(approval_id: str):
    """Delete a draft."""
    CommentForm()
    services.delete_approval(current_actor(), approval_id)
    flash("The draft was deleted.", "info")
    return redirect(url_for("approvals.index"), 303)


@bp.post("/approvals/<approval_id>/comments")
def comment(approval_id: str):
    form = CommentForm()
    if not form.validate():
        abort(400)
    data = validated(CommentInput, {"body": (form.comment.data or "").strip()})
    services.add_comment(current_actor(), approval_id, data.body)
    return redirect(url_for("approvals.show", approval_id=approval_id) + "#comments", 303)


# --- Settings → Approval levels and Organization (owner and admins) ----------------------------


def _level_input(form: LevelForm) -> dict:
    data = {
        "name": form.name.data,
        "rank": form.rank.data,
        "max_discount_percent": to_percent(form.max_discount_percent.data, "largest discount"),
        "max_discount_amount": None,
    }
    if (form.cap_amount.data or "").strip():
        currency = form.cap_currency.data
        data["max_discount_amount"] = {
            "amount": to_minor_units(form.cap_amount.data, currency, "amount cap"),
            "currency": currency,
        }
    return data


@bp.route("/settings/approval-levels", methods=["GET", "POST"])
def levels():
    """The organization's approval levels; add one."""
    actor = current_actor()
    actor.require_manager("manage approval levels")
    form = LevelForm()
    status = save_form(
        form,
        lambda: approval_levels.create_level(actor, validated(LevelCreate, _level_input(form))),
        f"Level {form.name.data!r} added.",
        "approvals.levels",
    )
    if not isinstance(status, int):
        return status
    return render_template(
        "approvals/levels.html",
        title="Approval levels",
        form=form,
        levels=approval_levels.levels_by_rank(actor),
        currencies=CURRENCY_CHOICES,
    ), status


@bp.post("/settings/approval-levels/<level_id>")
def update_level(level_id: str):
    actor = current_actor()
    form = LevelForm()
    if not form.validate():
        abort(400)
    approval_levels.update_level(actor, level_id, validated(LevelUpdate, _level_input(form)))
    flash(f"Level {form.name.data!r} saved.", "info")
    return redirect(url_for("approvals.levels"), 303)


@bp.post("/settings/approval-levels/<level_id>/delete")
def delete_level(level_id: str):
    CommentForm()
    approval_levels.delete_level(current_actor(), level_id)
    flash("The level was deleted.", "info")
    return redirect(url_for("approvals.levels"), 303)
