"""The figures as the dashboard shows them: one table per chart (the page's "Show table", its
CSV file and the chart are drawn from the same rows), and each chart as SVG drawn on the server
by pygal — no JavaScript, and it prints."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import IO, Any

import pygal
from pygal.style import Style

from ..csv_files import write_csv
from ..currencies import format_major_units
from .schemas import InsightsOut

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2933",
    foreground_strong="#1f2933",
    foreground_subtle="#52606d",
    font_family="system-ui, -apple-system, 'Segoe UI', sans-serif",
    colors=("#1d4ed8", "#f59e0b", "#059669", "#dc2626", "#7c3aed"),
    title_font_size=18,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
)


@dataclass
class Table:
    """The numbers behind one chart: named columns, rows of cells, and how to draw them."""

    name: str  # its CSV file's name, and its id on the page
    title: str
    caption: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    kind: str = "bar"  # bar, stacked or horizontal
    x_title: str = ""
    y_title: str = ""
    series: list[tuple[str, int]] = field(default_factory=list)  # (legend, column) drawn

    def write_csv(self, out: IO[str]) -> int:
        """The table as a CSV file (text cells protected against formulas)."""
        return write_csv(out, self.columns, self.rows)


def _major(amount: int, currency: str) -> str:
    return format_major_units(amount, currency)


def _hours(seconds: int | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.1f}"


def tables(out: InsightsOut) -> list[Table]:
    """Every chart's table, in the order of the page."""
    cur = out.currency
    unit = "week" if out.period.group_by == "week" else "month"
    discount = Table(
        "discount",
        f"Discount given by {unit} ({cur})",
        f"Approved requests by the {unit} they were approved in: list total, net and "
        f"discount, in {cur}.",
        [
            unit.capitalize() + " from",
            "To",
            "Approved",
            f"List ({cur})",
            f"Net ({cur})",
            f"Discount ({cur})",
            "Discount (% of list)",
        ],
        [
            [
                str(p.start),
                str(p.end),
                p.approved,
                _major(p.list_amount, cur),
                _major(p.net_amount, cur),
                _major(p.discount_amount, cur),
                p.discount_percent,
            ]
            for p in out.discount.series
        ],
        kind="stacked",
        x_title=f"{unit.capitalize()} (from)",
        y_title=f"Amount ({cur})",
        series=[("Net", 4), ("Discount", 5)],
    )
    depth = Table(
        "depth",
        "Depth of discount: approved lines by band",
        "How many approved lines fall in each band of discount off list, catalog and custom "
        "lines apart.",
        ["Discount band", "Catalog lines", "Custom lines"],
        [[b.label, b.catalog_lines, b.custom_lines] for b in out.depth.bands],
        x_title="Discount off list (%)",
        y_title="Approved lines",
        series=[("Catalog lines", 1), ("Custom lines", 2)],
    )
    speed_rows = [
        [
            "All requests (submission to decision)",
            out.speed.decided,
            _hours(out.speed.median_seconds),
            _hours(out.speed.p90_seconds),
        ]
    ]
    speed_rows += [
        [
            f"Level {level.rank}: {level.level} (wait of a step)",
            level.steps,
            _hours(level.median_seconds),
            _hours(level.p90_seconds),
        ]
        for level in out.speed.levels
    ]
    speed = Table(
        "speed",
        "Speed of decisions (hours)",
        "From submission to the final decision, and how long each level's steps waited: "
        "median and 90th percentile, in hours.",
        ["Measured", "Decided", "Median (hours)", "90th percentile (hours)"],
        speed_rows,
        kind="horizontal",
        x_title="Hours",
        y_title="",
        series=[("Median", 2), ("90th percentile", 3)],
    )
    pending = Table(
        "pending",
        f"Pending now by age ({out.speed.pending.count} requests)",
        "Requests waiting for a decision now, by how long since they were submitted.",
        ["Waiting", "Requests"],
        [[age.label, age.count] for age in out.speed.pending.ages],
        x_title="Time since submission",
        y_title="Requests",
        series=[("Requests", 1)],
    )
    o = out.outcomes
    outcomes = Table(
        "outcomes",
        f"Outcomes ({o.auto_approved_share:g} % of approvals automatic)",
        "How the rounds of review that ended in the period ended: counts and rates; "
        "auto-approved requests are counted among the approved.",
        ["Outcome", "Count", "Rate (%)"],
        [
            ["Approved", o.approved, o.approved_rate],
            ["of which auto-approved", o.auto_approved, o.auto_approved_share],
            ["Rejected", o.rejected, o.rejected_rate],
            ["Sent back for changes", o.changes_requested, o.changes_requested_rate],
            ["Recalled", o.recalled, o.recalled_rate],
        ],
        kind="horizontal",
        x_title="Count",
        series=[("Count", 1)],
    )

    def requesters(name: str, title: str, people, column: int, x_title: str) -> Table:
        return Table(
            name,
            title,
            f"Members whose approved requests {title.lower().split(' by ')[1]}.",
            ["Member", "Approved", f"List ({cur})", f"Discount ({cur})", "Discount (% of list)"],
            [
                [
                    p.name,
                    p.approved,
                    _major(p.list_amount, cur),
                    _major(p.discount_amount, cur),
                    p.discount_percent,
                ]
                for p in people
            ],
            kind="horizontal",
            x_title=x_title,
            series=[(x_title, column)],
        )

    by_discount = requesters(
        "requesters-by-discount",
        f"Top requesters by discount given ({cur})",
        out.top_requesters_by_discount,
        3,
        f"Discount ({cur})",
    )
    by_count = requesters(
        "requesters-by-count",
        "Top requesters by count of approved requests",
        out.top_requesters_by_count,
        1,
        "Approved requests",
    )
    products = Table(
        "products",
        f"Top products by discount given ({cur})",
        "Price-book products on approved lines, by the discount given on them.",
        [
            "SKU",
            "Product",
            "Lines",
            "Quantity",
            f"List ({cur})",
            f"Discount ({cur})",
            "Discount (% of list)",
        ],
        [
            [
                p.sku,
                p.name,
                p.lines,
                p.quantity,
                _major(p.list_amount, cur),
                _major(p.discount_amount, cur),
                p.discount_percent,
            ]
            for p in out.top_products
        ],
        kind="horizontal",
        x_title=f"Discount ({cur})",
        series=[(f"Discount ({cur})", 5)],
    )
    return [discount, depth, speed, pending, outcomes, by_discount, by_count, products]


_KINDS = {"bar": pygal.Bar, "stacked": pygal.StackedBar, "horizontal": pygal.HorizontalBar}


def _number(cell: Any) -> float | None:
    if cell in ("", None):
        return None
    return float(cell)


def svg(table: Table) -> str:
    """The chart of a table as an SVG document (title, axis titles, legend, values)."""
    chart = _KINDS[table.kind](
        js=[],  # no script: the chart is a picture
        style=STYLE,
        width=760,
        height=380 if table.kind != "horizontal" else max(220, 90 + 44 * len(table.rows)),
        title=table.title,
        x_title=table.x_title or None,
        y_title=table.y_title or None,
        show_legend=len(table.series) > 1,
        legend_at_bottom=True,
        x_label_rotation=30 if len(table.rows) > 8 and table.kind != "horizontal" else 0,
        truncate_label=40,
        print_values=False,
        no_data_text="No data in this period",
        disable_xml_declaration=True,
        show_minor_x_labels=len(table.rows) <= 20,
    )
    chart.x_labels = [str(row[0]) for row in table.rows]
    for legend, column in table.series:
        chart.add(legend, [_number(row[column]) for row in table.rows])
    return chart.render(is_unicode=True)


def data_uri(table: Table) -> str:
    """The chart as an image the page embeds (an SVG in an <img>: the page's Content Security
    Policy stays strict, and the chart's own styles apply)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg(table).encode()).decode()
