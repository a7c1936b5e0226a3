"""Routing: where a submit sends an approval. Pure functions of the line items, the totals,
the organization's threshold and its levels — no database, no clock.

On submit the largest line discount decides. At or below the organization's auto-approve
threshold the approval is approved at once — unless a line is custom (its list price was typed
in, not taken from the price book): such an approval always needs at least the rank-1 level.
Otherwise the required level is the lowest level
that covers it (its largest discount, and its amount cap if it has one), or the highest level
if none does, and the approval passes one step per level from rank 1 up to it. Comparisons are
exact fractions, never floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict
from ..schemas import percent_of


@dataclass(frozen=True)
class Route:
    """Auto-approval, or one step per level up to the required level."""

    auto_approve: bool
    max_line_discount_bps: int  # rounded, for display; decisions use exact comparisons
    threshold_bps: int
    required: Any | None  # an ApprovalLevel
    levels: list[Any]
    reason: str  # why, in a sentence (the route preview shows it)


def largest_discount(items: Sequence[Any]) -> tuple[int, int]:
    """Return the largest per-unit line discount as an exact fraction (discount, list price)."""
    best = (0, 1)
    for item in items:
        discount, price = item.unit_list_price - item.unit_price, item.unit_list_price
        if discount * best[1] > best[0] * price:
            best = (discount, price)
    return best


def covers(bps: int, discount: tuple[int, int]) -> bool:
    """Whether ``bps`` basis points cover the discount ``discount[0] / discount[1]``."""
    return discount[0] * 10_000 <= bps * discount[1]


def to_bps(numerator: int, denominator: int) -> int:
    """Round a fraction to basis points, half up."""
    return round(percent_of(numerator, denominator) * 100)


def level_covers(level: Any, discount: tuple[int, int], totals: Any) -> bool:
    """Whether a level may approve: the largest line discount, and its amount cap if any.

    ``totals`` has ``currency``, ``list_amount`` and ``amount``; a cap in another currency
    never covers.
    """
    if not covers(level.max_discount_bps, discount):
        return False
    if level.max_discount_amount is None:
        return True
    total_discount = totals.list_amount - totals.amount
    return (
        level.max_discount_currency == totals.currency
        and total_discount <= level.max_discount_amount
    )


def _percent(bps: int) -> str:
    return f"{bps / 100:g} %"


def _lines(numbers: list[int]) -> str:
    book = "not taken from the price book"
    if len(numbers) == 1:
        return f"Line {numbers[0]} is a custom line (its list price was typed in, {book})"
    listed = ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"
    return f"Lines {listed} are custom lines (their list prices were typed in, {book})"


def route(items: Sequence[Any], totals: Any, threshold_bps: int, levels: list[Any]) -> Route:
    """Compute the route of a submit: deterministic, from the line items and the levels.

    ``levels`` are the organization's approval levels, rank 1 first; an item with a true
    ``custom`` is a custom line.
    """
    discount = largest_discount(items)
    display = to_bps(*discount)
    custom = [n for n, item in enumerate(items, start=1) if getattr(item, "custom", False)]
    within = covers(threshold_bps, discount)
    largest = f"The largest line discount, {_percent(display)},"
    if within and not custom:
        reason = (
            f"{largest} is within the auto-approve threshold, {_percent(threshold_bps)}: "
            "approved at once."
        )
        return Route(True, display, threshold_bps, None, [], reason)
    if not levels:
        raise Conflict(
            "This discount needs approval, and the organization has no approval levels yet."
        )
    required = next((lvl for lvl in levels if level_covers(lvl, discount, totals)), None)
    covered = required is not None
    required = required or levels[-1]  # nothing covers it: the highest level decides
    steps = [level for level in levels if level.rank <= required.rank]
    if within:
        reason = (
            f"{_lines(custom)}: a custom line is never approved at once, so "
            f"{required.name} decides."
        )
    else:
        decides = (
            f"{required.name} is the lowest level that covers it"
            if covered
            else f"no level covers it, so the highest, {required.name}, decides"
        )
        reason = f"{largest} is above the auto-approve threshold, {_percent(threshold_bps)}: "
        reason += decides + "."
        if custom:
            reason += f" {_lines(custom)}."
    return Route(False, display, threshold_bps, required, steps, reason)
