"""Shapes shared by every API resource: errors, lists, paging and percentages.

The pydantic models in each feature's ``schemas.py`` validate what comes in and describe what
goes out; the OpenAPI document at ``/v2/openapi.json`` is generated from them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from .pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest

OBJECT_ID_MAX = 32


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(**constraints: Any) -> Any:
    """A field a PATCH may leave out; ``null`` is refused (the type does not admit it)."""
    return Field(default=None, json_schema_extra=_drop_default, **constraints)


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A string, stripped of surrounding blanks, within bounds."""
    return Annotated[
        StrictStr,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
    ]


ObjectId = Annotated[StrictStr, StringConstraints(max_length=OBJECT_ID_MAX)]

# A percentage with at most two decimals, 0–100 (kept in basis points inside).
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]


def to_bps(percent: Decimal) -> int:
    return int(percent * 100)


def to_percent(bps: int) -> float:
    return bps / 100


def percent_of(part: int, whole: int) -> float:
    """Return ``part / whole`` as a percentage rounded half up to two decimals."""
    if whole <= 0:
        return 0.0
    return ((part * 20_000 + whole) // (2 * whole)) / 100


class Input(BaseModel):
    """A request body or query: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ListQuery(Input):
    limit: int = Field(
        DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="How many objects to return (1–100)."
    )
    starting_after: ObjectId = optional(
        description="A cursor: the id of the last object of the previous page."
    )
    ending_before: ObjectId = optional(
        description="A cursor: the id of the first object of the next page."
    )

    def page(self) -> PageRequest:
        return PageRequest(self.limit, self.starting_after, self.ending_before)


class Error(BaseModel):
    """The documented error shape."""

    error: str = Field(description="A machine-readable code such as `parameter_invalid`.")
    message: str = Field(description="A sentence for the developer.")
    param: str | None = Field(None, description="The input at fault, when one is.")


class ListOf(BaseModel):
    """A page of objects, newest first; each feature narrows ``data``."""

    object: Literal["list"]
    data: list[Any]
    has_more: bool = Field(description="Whether more objects follow this page.")
