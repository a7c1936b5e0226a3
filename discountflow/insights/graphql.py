"""Insights over GraphQL: the figures of ``GET /v2/insights``, from the same service and model.

Every list takes ``first`` (so the cost analysis counts it, as it counts every list); the
arguments are validated by the REST query's model, so a refusal is the same
``parameter_invalid``.
"""

from __future__ import annotations

from datetime import date

import strawberry
from strawberry.types import Info

from ..graphql_base import Long, actor, check_first, validated
from . import services
from .schemas import MAX_TOP, InsightsOut, InsightsQuery


@strawberry.type(description="The days of the figures (UTC, both included).")
class InsightsPeriod:
    start: date
    end: date
    group_by: str


@strawberry.type(description="The filters the figures were computed with.")
class InsightsFilters:
    requested_by: strawberry.ID | None
    approval_level: strawberry.ID | None
    product: strawberry.ID | None


@strawberry.type(description="The approved requests of one week or month.")
class DiscountPoint:
    start: date
    end: date
    approved: int
    list_amount: Long
    net_amount: Long
    discount_amount: Long
    discount_percent: float


@strawberry.type(description="Discount given on the period's approved requests.")
class DiscountGiven:
    approved: int
    list_amount: Long
    net_amount: Long
    discount_amount: Long
    discount_percent: float

    @strawberry.field(description="By week or month, oldest first.")
    def series(self, first: int) -> list[DiscountPoint]:
        return self.series[: check_first(first)]


@strawberry.type(description="Approved lines whose discount falls in one band.")
class DepthBand:
    label: str
    min_percent: int
    max_percent: int | None
    catalog_lines: int
    custom_lines: int


@strawberry.type(description="How deep the approved lines' discounts go.")
class Depth:
    catalog_lines: int
    custom_lines: int

    @strawberry.field(description="0–5 %, 5–10 % … 50 % +.")
    def bands(self, first: int) -> list[DepthBand]:
        return self.bands[: check_first(first)]


@strawberry.type(description="How long the steps of one level waited.")
class LevelSpeed:
    level: str
    rank: int
    steps: int
    median_seconds: int | None
    p90_seconds: int | None


@strawberry.type(description="Requests pending for this long.")
class PendingAge:
    label: str
    min_days: int
    max_days: int | None
    count: int


@strawberry.type(description="A request waiting for a decision.")
class PendingRequest:
    id: strawberry.ID
    title: str
    requested_by: strawberry.ID | None
    requested_by_name: str
    level: str | None
    age_seconds: int


@strawberry.type(description="What is pending now.")
class Pending:
    count: int

    @strawberry.field(description="By age.")
    def ages(self, first: int) -> list[PendingAge]:
        return self.ages[: check_first(first)]

    @strawberry.field(description="The longest waiting, oldest first.")
    def oldest(self, first: int) -> list[PendingRequest]:
        return self.oldest[: check_first(first)]


@strawberry.type(description="How fast requests are decided.")
class Speed:
    decided: int
    median_seconds: int | None
    p90_seconds: int | None
    pending: Pending

    @strawberry.field(description="By level, lowest rank first.")
    def levels(self, first: int) -> list[LevelSpeed]:
        return self.levels[: check_first(first)]


@strawberry.type(description="How the rounds of review that ended in the period ended.")
class Outcomes:
    approved: int
    rejected: int
    changes_requested: int
    recalled: int
    total: int
    approved_rate: float
    rejected_rate: float
    changes_requested_rate: float
    recalled_rate: float
    auto_approved: int
    auto_approved_share: float


@strawberry.type(description="A member's approved requests.")
class RequesterFigures:
    member: strawberry.ID
    name: str
    approved: int
    list_amount: Long
    discount_amount: Long
    discount_percent: float


@strawberry.type(description="A product's approved lines.")
class ProductFigures:
    product: strawberry.ID
    sku: str
    name: str
    lines: int
    quantity: Long
    list_amount: Long
    discount_amount: Long
    discount_percent: float


@strawberry.type(description="The figures of GET /v2/insights: amounts in minor units.")
class Insights:
    period: InsightsPeriod
    currency: str
    filters: InsightsFilters
    scope: str
    discount: DiscountGiven
    depth: Depth
    speed: Speed
    outcomes: Outcomes

    @strawberry.field(description="By discount given (at most 50).")
    def top_requesters_by_discount(self, first: int) -> list[RequesterFigures]:
        return self.top_requesters_by_discount[: check_first(first)]

    @strawberry.field(description="By count of approved requests (at most 50).")
    def top_requesters_by_count(self, first: int) -> list[RequesterFigures]:
        return self.top_requesters_by_count[: check_first(first)]

    @strawberry.field(description="By discount given (at most 50).")
    def top_products(self, first: int) -> list[ProductFigures]:
        return self.top_products[: check_first(first)]


@strawberry.type
class Query:
    @strawberry.field(
        description="Discount given, depth, speed and outcomes of a period, in one currency; "
        "the arguments are GET /v2/insights's query parameters."
    )
    def insights(
        self,
        info: Info,
        start: str | None = None,
        end: str | None = None,
        currency: str | None = None,
        group_by: str | None = None,
        requested_by: strawberry.ID | None = None,
        approval_level: strawberry.ID | None = None,
        product: strawberry.ID | None = None,
    ) -> Insights:
        query = validated(
            InsightsQuery,
            {
                "start": start,
                "end": end,
                "currency": currency,
                "group_by": group_by,
                "requested_by": requested_by,
                "approval_level": approval_level,
                "product": product,
                "top": MAX_TOP,  # each list's ``first`` takes what it wants of these
            },
            argument=None,
        )
        figures: InsightsOut = services.insights(actor(info), query)
        return figures  # type: ignore[return-value]  (the Out model is the object)
