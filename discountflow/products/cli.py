"""``flask products import|export``: the price book as a CSV file (as the organization's owner)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..actors import Actor
from ..cli import ProgressLines, reports_domain_errors
from ..organizations.services import find_organization
from .csv_files import MAX_ROWS, ImportRefused, export_products, import_products, read_file

products_cli = AppGroup("products", help="Import and export the price book (CSV).")
_org_option = click.option("--org", "organization", required=True, help="Organization id or slug.")
IMPORT_PROGRESS = {
    "read": "{done:,} rows read…",
    "checked": "{done:,} of {total:,} products checked…",
    "saving": "Saving {total:,} products…",
}
EXPORT_PROGRESS = {"written": "{done:,} of {total:,} products written…"}


@products_cli.command("import")
@_org_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@reports_domain_errors
def import_command(organization: str, file: str) -> None:
    """Create or update products by SKU from FILE (columns sku, name; optional description,
    currency with unit_list_price, active). A file with a bad row changes nothing."""
    actor = Actor.for_cli(find_organization(organization))
    try:
        if file == "-":
            text = read_file(sys.stdin.buffer)
        else:
            with open(file, "rb") as binary:
                text = read_file(binary)
        result = import_products(actor, text, ProgressLines(IMPORT_PROGRESS))
    except ImportRefused as refused:
        for line in refused.lines():
            click.echo(f"{file}: {line}", err=True)
        raise
    click.echo(
        f"Imported {result.rows} product{'s' if result.rows != 1 else ''} from {file}: "
        f"{result.created} new, {result.changed} changed, "
        f"{result.rows - result.created - result.changed} already as the file says."
    )


@products_cli.command("export")
@_org_option
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@reports_domain_errors
def export_command(organization: str, file: str) -> None:
    """Write the price book to FILE (standard output by default), in the import's format."""
    actor = Actor.for_cli(find_organization(organization))
    try:
        with click.open_file(file, "w", encoding="utf-8", atomic=file != "-") as out:
            count, rows = export_products(actor, out, ProgressLines(EXPORT_PROGRESS))
    except OSError as error:
        raise click.ClickException(f"Cannot write {file}: {error.strerror or error}.") from error
    if file != "-":
        click.echo(f"Exported {count} product{'s' if count != 1 else ''} to {file}.", err=True)
    if rows > MAX_ROWS:
        click.echo(
            f"Note: {rows:,} rows; an import takes at most {MAX_ROWS:,} per file: split it to "
            "import it again.",
            err=True,
        )
