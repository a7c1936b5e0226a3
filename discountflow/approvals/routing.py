"""Routing: where a submit sends an approval. Pure functions of the line items, the totals,
the organization's threshold and its levels — no database, no clock.

On submit the largest line discount decides. At or below the organization's auto-approve
threshold the approval is approved at once. Otherwise the required level is the lowest level
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


def route(items: Sequence[Any], totals: Any, threshold_bps: int, levels: list[Any]) -> Route:
    """Compute the route of a submit: deterministic, from the line items and the levels.

    ``levels`` are the organization's approval levels, rank 1 first.
    """
    discount = largest_discount(items)
    display = to_bps(*discount)
    if covers(threshold_bps, discount):
        return Route(True, display, threshold_bps, None, [])
    if not levels:
        raise Conflict(
            "This discount needs approval, and the organization has no approval levels yet."
        )
    required = next((lvl for lvl in levels if level_covers(lvl, discount, totals)), None)
    required = required or levels[-1]  # nothing covers it: the highest level decides
    steps = [level for level in levels if level.rank <= required.rank]
    return Route(False, display, threshold_bps, required, steps)
