"""Settings → Products: the price book in the dashboard (owner and admins) — list, search,
add, edit, archive, delete, import and export.

Views are thin: a form, one service call, a page. Who may do what is the services' to say.
"""

from __future__ import annotations

from datetime import date

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required

from ..dashboard import csv_download, current_actor, list_query, pager
from ..dashboard.forms import CURRENCY_CHOICES, validated
from ..errors import DomainError
from ..organizations.services import get_organization
from . import services
from .csv_files import ImportRefused, export_products, import_products, read_file
from .forms import MAX_PRICE_ROWS, ImportForm, ProductForm, fill_from, product_input
from .schemas import ProductCreate, ProductListQuery, ProductUpdate

bp = Blueprint("products", __name__, template_folder="templates")

PAGE_SIZE = 50
MANAGE = services.MANAGE_PRODUCTS
SHOWN_PROBLEMS = 1000  # a refused file's bad rows shown on the page (the CLI prints all)


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here is for signed-in members (the owner and admins, as Settings is)."""
    current_actor().require_manager(MANAGE)


@bp.get("/settings/products")
def index():
    """The price book: search by name or SKU, active or archived, a page at a time."""
    actor = current_actor()
    q = request.args.get("q", "").strip()
    state = request.args.get("active", "")
    query: dict = {"q": q} if q else {}
    if state in ("true", "false"):
        query["active"] = state == "true"
    parsed = list_query(ProductListQuery, PAGE_SIZE, query)
    products, has_more = services.list_products(actor, parsed, parsed.page())
    filters = {name: value for name, value in (("q", q), ("active", state)) if value}
    return render_template(
        "products/index.html",
        title="Products",
        products=products,
        q=q,
        state=state,
        filters=filters,
        import_form=ImportForm(),
        **pager([product.id for product in products], parsed, has_more),
    )


def _render_form(form: ProductForm, product=None, status: int = 200):
    if not form.prices.entries or (form.prices.entries[-1].form.amount.data or "").strip():
        if len(form.prices.entries) < MAX_PRICE_ROWS:
            form.prices.append_entry()
    return render_template(
        "products/form.html",
        title=f"Product {product.sku}" if product else "New product",
        form=form,
        product=product,
        currencies=CURRENCY_CHOICES,
    ), status


def _save(form: ProductForm, product, save) -> Response | tuple:
    """Save a posted product form, or show it again with what was wrong."""
    if request.form.get("action") == "add_price":
        return _render_form(form, product)
    if not form.validate_on_submit():
        return _render_form(form, product, 400)
    try:
        saved = save()
    except DomainError as error:
        flash(error.message, "error")
        return _render_form(form, product, 400)
    flash(f"{saved.sku} saved.", "info")
    return redirect(url_for("products.index"), 303)


@bp.route("/settings/products/new", methods=["GET", "POST"])
def new():
    """Add a product with its list prices."""
    form = ProductForm()
    if request.method == "GET":
        return _render_form(form)
    actor = current_actor()
    return _save(
        form,
        None,
        lambda: services.create_product(actor, validated(ProductCreate, product_input(form))),
    )


@bp.route("/settings/products/<product_id>", methods=["GET", "POST"])
def edit(product_id: str):
    """Change a product; line items already saved keep the price they took."""
    actor = current_actor()
    product = services.get_product(actor, product_id)
    form = ProductForm()
    if request.method == "GET":
        fill_from(form, product)
        return _render_form(form, product)
    return _save(
        form,
        product,
        lambda: services.update_product(
            actor, product_id, validated(ProductUpdate, product_input(form))
        ),
    )


@bp.post("/settings/products/<product_id>/<action>")
def act(product_id: str, action: str):
    """Archive, restore or delete a product (one the line items name can only be archived)."""
    if action not in ("archive", "restore", "delete"):
        abort(404)
    actor = current_actor()
    try:
        if action == "delete":
            services.delete_product(actor, product_id)
            flash("The product was deleted.", "info")
            return redirect(url_for("products.index"), 303)
        update = ProductUpdate(active=action == "restore")
        product = services.update_product(actor, product_id, update)
    except DomainError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for("products.edit", product_id=product_id), 303)
    flash(f"{product.sku} was {'restored' if product.active else 'archived'}.", "info")
    return redirect(url_for("products.edit", product_id=product_id), 303)


@bp.route("/settings/products/import", methods=["GET", "POST"])
def import_file():
    """Import a CSV file: products created or updated by SKU, all of them or none."""
    form = ImportForm()
    problems: list[str] = []
    total = 0
    if form.validate_on_submit():
        try:
            result = import_products(current_actor(), read_file(form.file.data))
        except ImportRefused as refused:
            flash(refused.message, "error")
            total = len(refused.problems)
            problems = refused.lines()[:SHOWN_PROBLEMS]
        except DomainError as error:
            flash(error.message, "error")
        else:
            flash(
                f"Imported {result.rows} products: {result.created} new, {result.changed} changed.",
                "info",
            )
            return redirect(url_for("products.index"), 303)
    status = 400 if request.method == "POST" else 200
    return render_template(
        "products/import.html",
        title="Import products",
        import_form=form,
        problems=problems,
        hidden=total - len(problems),
    ), status


@bp.get("/settings/products/export.csv")
def export_file():
    """The whole price book as a CSV file, in the import's format."""
    actor = current_actor()
    name = f"price-book-{get_organization(actor).slug}-{date.today().isoformat()}.csv"
    return csv_download(name, lambda out: export_products(actor, out))
