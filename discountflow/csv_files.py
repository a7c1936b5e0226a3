"""CSV files the service writes (the price book, the approvals list, each Insights chart) and
the price book's import reads back.

A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, a tab or a
carriage return first) is written behind a single quote, as OWASP advises; ``unquoted`` takes
that quote off again, so an export imports back to exactly the same text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(cell: str) -> str:
    """A cell a spreadsheet will not run: behind a quote if it looks like a formula (or starts
    with a quote itself, so that unquoting gives back exactly the text)."""
    return "'" + cell if cell.startswith((*_FORMULA_STARTS, "'")) else cell


def unquoted(cell: str) -> str:
    """A cell as written by ``safe_cell``: the protecting quote comes off."""
    if cell.startswith("'") and cell[1:2] and cell[1:2] in (*_FORMULA_STARTS, "'"):
        return cell[1:]
    return cell


def write_csv(out: IO[str], header: Iterable[str], rows: Iterable[Iterable[object]]) -> int:
    """Write a CSV file: text cells a spreadsheet would run as a formula behind a quote
    (``safe_cell``), numbers as they are, ``None`` empty; return the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(str(name)) for name in header])
    count = 0
    for row in rows:
        writer.writerow(
            [
                cell if isinstance(cell, int) else "" if cell is None else safe_cell(str(cell))
                for cell in row
            ]
        )
        count += 1
    return count
