"""What Insights accepts (the period, currency, grouping and filters) and the one shape of its
figures, which REST, OpenAPI, GraphQL and the dashboard all answer."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator

from ..schemas import Currency, Input, ObjectId, Out, optional

# The longest period one answer covers: three years (by month; by week, at most 100 weeks).
MAX_DAYS = 1_096
MAX_TOP = 50
DEFAULT_TOP = 5
DEFAULT_DAYS = 90
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _calendar_date(value: Any) -> Any:
    """``2026-12-07`` exactly: no timestamps, no other spellings (a date is a day, in UTC)."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("must be a date such as 2026-12-07")
    return value


Day = Annotated[
    date,
    BeforeValidator(_calendar_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}),
]


class InsightsQuery(Input):
    start: Day = optional(
        description=f"First day of the period (UTC). Default: {DEFAULT_DAYS - 1} days before end."
    )
    end: Day = optional(description="Last day of the period, included (UTC). Default: today.")
    currency: Currency = optional(
        description="The currency of the figures (amounts of other currencies are never added "
        "in). Default: the currency of the organization's newest request."
    )
    group_by: Literal["week", "month"] = Field(
        "week", description="The points of the discount series: weeks (from Monday) or months."
    )
    requested_by: ObjectId = optional(description="Only the requests of this member.")
    approval_level: ObjectId = optional(
        description="Only the requests whose route required this approval level."
    )
    product: ObjectId = optional(
        description="Only the requests with a line of this product (and, for the line "
        "figures, only its lines)."
    )
    top: int = Field(
        DEFAULT_TOP,
        ge=1,
        le=MAX_TOP,
        description=f"How many requesters and products the top lists hold (1–{MAX_TOP}).",
    )

    @field_validator("start", "end")
    @classmethod
    def _a_plain_year(cls, day: date | None) -> date | None:
        if day is not None and not 1970 <= day.year <= 9998:
            raise ValueError("dates must be between 1970 and 9998")
        return day

    @field_validator("end")
    @classmethod
    def _a_bounded_period(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if start is not None and end is not None:
            if start > end:
                raise ValueError("start must be on or before end")
            if (end - start).days + 1 > MAX_DAYS:
                raise ValueError(f"a period holds at most {MAX_DAYS} days")
        return end


# --- output ------------------------------------------------------------------------------------


class PeriodOut(Out):
    start: date = Field(description="First day (UTC).")
    end: date = Field(description="Last day, included (UTC).")
    group_by: Literal["week", "month"]


class FiltersOut(Out):
    requested_by: str | None
    approval_level: str | None
    product: str | None


class DiscountPointOut(Out):
    start: date = Field(description="First day of the week or month (within the period).")
    end: date = Field(description="Last day, included (within the period).")
    approved: int = Field(description="Requests approved in it.")
    list_amount: int = Field(description="List total of those requests, in minor units.")
    net_amount: int = Field(description="What the customers pay, in minor units.")
    discount_amount: int = Field(description="List total minus net, in minor units.")
    discount_percent: float = Field(description="The discount as a percentage of list.")


class DiscountOut(Out):
    approved: int = Field(description="Requests approved in the period (auto-approved included).")
    list_amount: int
    net_amount: int
    discount_amount: int
    discount_percent: float
    series: list[DiscountPointOut] = Field(description="By week or month, every one listed.")


class DepthBandOut(Out):
    label: str = Field(description="`0–5 %`, `5–10 %` … `50 % +`.")
    min_percent: int = Field(description="The band holds discounts from this percentage …")
    max_percent: int | None = Field(description="… up to below this one (none: no limit).")
    catalog_lines: int = Field(description="Approved lines of price-book products.")
    custom_lines: int = Field(description="Approved custom lines (list price typed in).")


class DepthOut(Out):
    catalog_lines: int
    custom_lines: int
    bands: list[DepthBandOut]


class LevelSpeedOut(Out):
    level: str = Field(description="The level's name when the request was routed.")
    rank: int
    steps: int = Field(description="Steps decided at this level.")
    median_seconds: int | None = Field(description="How long a step waited: the median.")
    p90_seconds: int | None = Field(description="… the 90th percentile (nearest rank).")


class PendingAgeOut(Out):
    label: str = Field(description="`under 1 day`, `1–3 days` … `30 days +`.")
    min_days: int
    max_days: int | None
    count: int


class PendingRequestOut(Out):
    id: str = Field(description="The approval.")
    title: str
    requested_by: str | None = Field(description="The member who asked.")
    requested_by_name: str
    level: str | None = Field(description="The level whose decision it waits for.")
    age_seconds: int = Field(description="Since it was submitted.")


class PendingOut(Out):
    count: int = Field(description="Requests pending now (whatever the period).")
    ages: list[PendingAgeOut]
    oldest: list[PendingRequestOut] = Field(description="The longest waiting, oldest first.")


class SpeedOut(Out):
    decided: int = Field(
        description="Requests approved or rejected by people in the period (auto-approved "
        "ones take no time and are left out)."
    )
    median_seconds: int | None = Field(
        description="From the submission of the round decided to the final decision: median."
    )
    p90_seconds: int | None = Field(description="… the 90th percentile (nearest rank).")
    levels: list[LevelSpeedOut] = Field(description="By level, lowest rank first.")
    pending: PendingOut


class OutcomesOut(Out):
    approved: int = Field(description="Requests approved in the period (auto-approved included).")
    rejected: int
    changes_requested: int = Field(description="Times a request was sent back for changes.")
    recalled: int = Field(description="Times a requester took a pending request back.")
    total: int = Field(description="All four: rounds of review that ended in the period.")
    approved_rate: float = Field(description="Percent of the total.")
    rejected_rate: float
    changes_requested_rate: float
    recalled_rate: float
    auto_approved: int = Field(description="Approved at once, under the auto-approve threshold.")
    auto_approved_share: float = Field(description="Percent of the approved.")


class RequesterOut(Out):
    member: str = Field(description="The member's id.")
    name: str = Field(description="Their name (or email).")
    approved: int
    list_amount: int
    discount_amount: int
    discount_percent: float


class ProductFigureOut(Out):
    product: str = Field(description="The product's id.")
    sku: str
    name: str
    lines: int
    quantity: int
    list_amount: int
    discount_amount: int
    discount_percent: float


class InsightsOut(Out):
    object: Literal["insights"]
    period: PeriodOut
    currency: str = Field(description="Every amount is in minor units of this currency.")
    filters: FiltersOut
    scope: Literal["organization", "own"] = Field(
        description="`organization` for the owner, admins and API keys; `own` for other "
        "members: the requests they made, and those in which they decided a step."
    )
    discount: DiscountOut
    depth: DepthOut
    speed: SpeedOut
    outcomes: OutcomesOut
    top_requesters_by_discount: list[RequesterOut]
    top_requesters_by_count: list[RequesterOut]
    top_products: list[ProductFigureOut] = Field(description="By discount given.")
