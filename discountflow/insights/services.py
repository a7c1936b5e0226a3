"""Insights: how much discount the organization gives and how fast it decides — every figure,
computed once, here, for REST, GraphQL and the dashboard alike.

Everything is added up in the database with aggregate queries over a few covering indexes (see
``approvals/models.py``): what comes back to Python is a few hundred grouped rows at most, never
the approvals themselves. Medians and 90th percentiles are nearest-rank percentiles taken with
window functions (``row_number() OVER (ORDER BY …)``), which SQLite and PostgreSQL run from the
same SQL; so are the week and month buckets (a ``CASE`` that halves the period at each level).

Who sees what is decided here: the owner, admins and API keys see the whole organization; any
other member sees the requests they made and those in which they decided a step.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, case, exists, extract, func, literal, or_, select

from ..actors import Actor, fetch
from ..approvals.models import (
    Approval,
    ApprovalLevel,
    ApprovalStatus,
    Decision,
    DecisionType,
    LineItem,
    Step,
)
from ..audit.models import Event
from ..database import UTCDateTime, require_usable_id, utcnow
from ..errors import InvalidParameter, NotFound
from ..extensions import db
from ..organizations.models import User
from ..organizations.services import member_names
from ..products.models import Product, ProductPrice
from ..schemas import percent_of
from .schemas import DEFAULT_DAYS, InsightsOut, InsightsQuery

_A, _L, _S = Approval.__table__.c, LineItem.__table__.c, Step.__table__.c
# Tables of the filters' subqueries, apart from those the figures read.
_DECIDED_STEPS = Step.__table__.alias("decided_steps").c
_PRODUCT_LINES = LineItem.__table__.alias("product_lines").c
_APPROVED = (ApprovalStatus.APPROVED.value, ApprovalStatus.EXPIRED.value)
_DECIDED = (*_APPROVED, ApprovalStatus.REJECTED.value)
BAND_WIDTH = 5  # percent
BANDS = 11  # 0–5 %, 5–10 % … 45–50 %, and 50 % or more
PENDING_AGES = (0, 1, 3, 7, 14, 30)  # days: under 1 day, 1–3 days … 30 days or more
OLDEST_PENDING = 5
DEFAULT_CURRENCY = "USD"
MAX_POINTS = 100  # of the discount series (a list of GraphQL gives at most 100)
# One request's amounts stay below 2^63 (schemas.MAX_UNIT_PRICE), but a sum of ten of the
# largest does not: SQLite's sum() then fails ("integer overflow") where PostgreSQL's gives a
# numeric. Amounts are therefore added in two halves, each far from the limit.
_HALF = 2**32


# --- the period ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The days asked for (UTC, both included) and their weeks or months."""

    start: date
    end: date
    group_by: str

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), UTC)

    @property
    def until(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)

    @cached_property
    def buckets(self) -> list[tuple[date, date]]:
        """The weeks (from Monday) or months of the period, cut to it: (first day, last day)."""
        found = []
        day = self.start
        while day <= self.end:
            if self.group_by == "week":
                following = day + timedelta(days=7 - day.weekday())
            else:
                last = calendar.monthrange(day.year, day.month)[1]
                following = day.replace(day=last) + timedelta(days=1)
            last_day = min(following - timedelta(days=1), self.end)
            found.append((day, last_day))
            day = following
        return found


def period_of(query: InsightsQuery, today: date) -> Period:
    """The period a query asks for: the last 90 days up to today unless it says otherwise."""
    end = query.end or (query.start + timedelta(days=DEFAULT_DAYS - 1) if query.start else today)
    start = query.start or end - timedelta(days=DEFAULT_DAYS - 1)
    # (The query model bounds a period given in full; one given by half is bounded here.)
    given = query.model_dump(exclude_none=True)
    try:
        checked = InsightsQuery.model_validate({**given, "start": start, "end": end})
    except ValidationError as error:
        message = error.errors()[0]["msg"].removeprefix("Value error, ")
        raise InvalidParameter(f"Invalid period: {message}.", param="start") from error
    period = Period(checked.start, checked.end, query.group_by)
    if len(period.buckets) > MAX_POINTS:
        raise InvalidParameter(
            f"By week, a period holds at most {MAX_POINTS} weeks: group it by month.",
            param="group_by",
        )
    return period


def _bucket(column, bounds: list[datetime], low: int = 0, high: int | None = None):
    """The index of the bucket holding ``column``: how many of ``bounds`` (sorted) are at or
    before it, as a ``CASE`` of about log2(buckets) comparisons a row."""
    if high is None:
        high = len(bounds)
    if low == high:
        return literal(low)
    middle = (low + high + 1) // 2
    return case(
        (
            column < literal(bounds[middle - 1], UTCDateTime),
            _bucket(column, bounds, low, middle - 1),
        ),
        else_=_bucket(column, bounds, middle, high),
    )


# --- who sees what, and the filters ------------------------------------------------------------


def _scope(actor: Actor) -> tuple[Any, str]:
    """The approvals whose figures the actor may see, and what that is called."""
    mine = _A.organization_id == actor.organization_id
    if actor.manages_organization:  # the owner, admins, and API keys (the owner's authority)
        return mine, "organization"
    me = actor.user.id
    decided = exists().where(
        _DECIDED_STEPS.approval_id == _A.id, _DECIDED_STEPS.decided_by_id == me
    )
    return and_(mine, or_(_A.requested_by_id == me, decided)), "own"


def _check_filter(actor: Actor, model: Any, object_id: str | None, param: str, noun: str):
    """A filter must name an object of the actor's organization (400 otherwise: the id of
    another organization is exactly as unknown as a made-up one)."""
    if object_id is None:
        return None
    require_usable_id(object_id, param)
    try:
        return fetch(actor, model, object_id, noun)
    except NotFound as error:
        raise InvalidParameter(error.message, param=param) from None


def _default_currency(actor: Actor) -> str:
    """The currency of the organization's newest request (one row, read by an index)."""
    newest = db.session.execute(
        select(_A.currency)
        .where(_A.organization_id == actor.organization_id)
        .order_by(_A.created_at.desc(), _A.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return newest or DEFAULT_CURRENCY


def currencies_in_use(actor: Actor, chosen: str) -> list[str]:
    """The currencies people may pick from: the price book's, and the one chosen."""
    book = db.session.execute(
        select(ProductPrice.currency)
        .join(Product, Product.id == ProductPrice.product_id)
        .where(Product.organization_id == actor.organization_id)
        .distinct()
    ).scalars()
    return sorted({*book, chosen})


# --- the figures -------------------------------------------------------------------------------


def _sum(value, name: str) -> list[Any]:
    """``sum(value)`` (of amounts, never negative) as two columns that cannot overflow: the
    quotients by 2^32 and the remainders; ``_total`` puts them back together."""
    return [
        func.sum(value // _HALF).label(f"{name}_high"),
        func.sum(value % _HALF).label(f"{name}_low"),
    ]


def _total(row: Any, name: str) -> int:
    """The exact sum of the two columns ``_sum`` named ``name``."""
    return int(getattr(row, f"{name}_high")) * _HALF + int(getattr(row, f"{name}_low"))


def _seconds(later, earlier):
    """Seconds between two times (SQLite: whole seconds; PostgreSQL: with their fraction)."""
    return extract("epoch", later) - extract("epoch", earlier)


def _percentiles(value, partition: list, where, *columns) -> list[Any]:
    """The median and 90th percentile (nearest rank) of ``value`` in each partition, with the
    partition's size: rows ``(*partition, rank, size, value)`` for ranks ceil(n/2), ceil(0.9n)."""
    ranked = (
        select(
            *columns,
            value.label("value"),
            func.row_number().over(partition_by=partition or None, order_by=value).label("rank"),
            func.count().over(partition_by=partition or None).label("size"),
        )
        .where(where)
        .subquery()
    )
    size, rank = ranked.c.size, ranked.c.rank
    wanted = or_(rank == (size + 1) // 2, rank == (size * 9 + 9) // 10)
    names = [ranked.c[column.key] for column in columns]
    return list(db.session.execute(select(*names, rank, size, ranked.c.value).where(wanted)))


def _median_and_p90(rows: list[Any]) -> tuple[int, int | None, int | None]:
    """(size, median, p90) from the rows of one partition."""
    if not rows:
        return 0, None, None
    size = rows[0].size
    by_rank = {row.rank: int(row.value) for row in rows}
    return size, by_rank.get((size + 1) // 2), by_rank.get((size * 9 + 9) // 10)


def insights(actor: Actor, query: InsightsQuery, now: datetime | None = None) -> InsightsOut:
    """Return the figures of a period in one currency, as the actor may see them."""
    now = now or utcnow()
    period = period_of(query, now.date())
    level = _check_filter(actor, ApprovalLevel, query.approval_level, "approval_level", "level")
    _check_filter(actor, User, query.requested_by, "requested_by", "member")
    _check_filter(actor, Product, query.product, "product", "product")
    currency = query.currency or _default_currency(actor)
    scope, scope_name = _scope(actor)

    chosen = [scope, _A.currency == currency]
    if query.requested_by is not None:
        chosen.append(_A.requested_by_id == query.requested_by)
    if level is not None:
        chosen.append(_A.required_level_id == level.id)
    if query.product is not None:
        chosen.append(
            exists().where(
                _PRODUCT_LINES.approval_id == _A.id, _PRODUCT_LINES.product_id == query.product
            )
        )
    in_period = and_(*chosen, _A.decided_at >= period.since, _A.decided_at < period.until)
    decided = and_(in_period, _A.status.in_(_DECIDED))
    approved = and_(in_period, _A.status.in_(_APPROVED))
    # An auto-approval submits and decides in one moment (one ``now`` in the service); a
    # person's decision always comes later.
    auto = _A.decided_at == _A.submitted_at

    buckets = period.buckets
    figures = _discount_and_requesters(actor, decided, auto, buckets, query.top)
    depth, products = _lines(approved, query.product, query.top)
    speed = _speed(actor, decided, auto, chosen, now)
    outcomes = _outcomes(actor, figures.pop("counts"), chosen, period)
    return InsightsOut.model_validate(
        {
            "object": "insights",
            "period": {"start": period.start, "end": period.end, "group_by": period.group_by},
            "currency": currency,
            "filters": {
                "requested_by": query.requested_by,
                "approval_level": query.approval_level,
                "product": query.product,
            },
            "scope": scope_name,
            "discount": figures["discount"],
            "depth": depth,
            "speed": speed,
            "outcomes": outcomes,
            "top_requesters_by_discount": figures["by_discount"],
            "top_requesters_by_count": figures["by_count"],
            "top_products": products,
        }
    )


def _amounts(list_amount: int, net_amount: int) -> dict[str, Any]:
    return {
        "list_amount": list_amount,
        "net_amount": net_amount,
        "discount_amount": list_amount - net_amount,
        "discount_percent": percent_of(list_amount - net_amount, list_amount),
    }


def _discount_and_requesters(
    actor: Actor, decided, auto, buckets: list[tuple[date, date]], top: int
) -> dict[str, Any]:
    """One pass over the period's decided requests, grouped by week or month, requester,
    outcome and auto-approval: the discount series, the top requesters and the counts."""
    bounds = [datetime.combine(first, time(), UTC) for first, _ in buckets[1:]]
    bucket = _bucket(_A.decided_at, bounds).label("bucket")
    rejected = (_A.status == ApprovalStatus.REJECTED.value).label("rejected")
    is_auto = case((auto, 1), else_=0).label("auto")
    rows = db.session.execute(
        select(
            bucket,
            _A.requested_by_id,
            rejected,
            is_auto,
            func.count().label("count"),
            *_sum(_A.list_amount, "list_amount"),
            *_sum(_A.amount, "net_amount"),
        )
        .where(decided)
        .group_by(bucket, _A.requested_by_id, rejected, is_auto)
    ).all()
    series = [{"count": 0, "list": 0, "net": 0} for _ in buckets]
    people: dict[str, dict[str, int]] = {}
    counts = {"approved": 0, "rejected": 0, "auto": 0}
    for row in rows:
        if row.rejected:
            counts["rejected"] += row.count
            continue
        counts["approved"] += row.count
        counts["auto"] += row.count if row.auto else 0
        point = series[row.bucket]
        person = people.setdefault(row.requested_by_id, {"count": 0, "list": 0, "net": 0})
        for each in (point, person):
            each["count"] += row.count
            each["list"] += _total(row, "list_amount")
            each["net"] += _total(row, "net_amount")
    total_list = sum(point["list"] for point in series)
    total_net = sum(point["net"] for point in series)
    discount = {
        "approved": counts["approved"],
        **_amounts(total_list, total_net),
        "series": [
            {"start": first, "end": last, "approved": point["count"]}
            | _amounts(point["list"], point["net"])
            for (first, last), point in zip(buckets, series, strict=True)
        ],
    }
    by_discount = sorted(people, key=lambda m: (-(people[m]["list"] - people[m]["net"]), m))
    by_count = sorted(people, key=lambda m: (-people[m]["count"], m))
    shown = set(by_discount[:top]) | set(by_count[:top])
    names = member_names(actor, shown)

    def requester(member: str) -> dict[str, Any]:
        figures = _amounts(people[member]["list"], people[member]["net"])
        del figures["net_amount"]
        return {
            "member": member,
            "name": names.get(member, member),
            "approved": people[member]["count"],
            **figures,
        }

    return {
        "discount": discount,
        "by_discount": [requester(m) for m in by_discount[:top]],
        "by_count": [requester(m) for m in by_count[:top]],
        "counts": counts,
    }


def _band(list_price, price):
    """The band of a line's discount: 0 for 0–5 %, 1 for 5–10 % … 10 for 50 % or more (integer
    arithmetic, the same in both databases)."""
    off = list_price - price
    return case(
        (or_(off <= 0, list_price <= 0), 0),
        (off * 2 >= list_price, BANDS - 1),
        else_=off * (100 // BAND_WIDTH) // list_price,
    )


def _lines(approved, product_id: str | None, top: int) -> tuple[dict, list[dict]]:
    """One pass over the approved requests' lines, grouped by product, custom and band: the
    depth bands (catalog and custom apart) and the top products."""
    band = _band(_L.unit_list_price, _L.unit_price).label("band")
    statement = (
        select(
            _L.product_id,
            _L.custom,
            band,
            func.count().label("lines"),
            func.sum(_L.quantity).label("quantity"),
            *_sum(_L.quantity * _L.unit_list_price, "list_amount"),
            *_sum(_L.quantity * _L.unit_price, "net_amount"),
        )
        .select_from(Approval.__table__.join(LineItem.__table__, _L.approval_id == _A.id))
        .where(approved)
        .group_by(_L.product_id, _L.custom, band)
    )
    if product_id is not None:
        statement = statement.where(_L.product_id == product_id)
    catalog, custom = [0] * BANDS, [0] * BANDS
    products: dict[str, dict[str, int]] = {}
    for row in db.session.execute(statement):
        (custom if row.custom else catalog)[row.band] += row.lines
        if row.product_id is not None:
            figures = products.setdefault(
                row.product_id, {"lines": 0, "quantity": 0, "list": 0, "net": 0}
            )
            figures["lines"] += row.lines
            figures["quantity"] += int(row.quantity)
            figures["list"] += _total(row, "list_amount")
            figures["net"] += _total(row, "net_amount")
    bands = []
    for index in range(BANDS):
        low = index * BAND_WIDTH
        high = None if index == BANDS - 1 else low + BAND_WIDTH
        bands.append(
            {
                "label": f"{low}–{high} %" if high is not None else f"{low} % +",
                "min_percent": low,
                "max_percent": high,
                "catalog_lines": catalog[index],
                "custom_lines": custom[index],
            }
        )
    depth = {"catalog_lines": sum(catalog), "custom_lines": sum(custom), "bands": bands}
    ranked = sorted(products, key=lambda p: (-(products[p]["list"] - products[p]["net"]), p))
    ranked = ranked[:top]
    books = (
        {
            row.id: row
            for row in db.session.execute(
                select(Product.id, Product.sku, Product.name).where(Product.id.in_(ranked))
            )
        }
        if ranked
        else {}
    )
    top_products = []
    for product in ranked:
        figures = _amounts(products[product]["list"], products[product]["net"])
        del figures["net_amount"]
        top_products.append(
            {
                "product": product,
                "sku": books[product].sku,
                "name": books[product].name,
                "lines": products[product]["lines"],
                "quantity": products[product]["quantity"],
                **figures,
            }
        )
    return depth, top_products


def _speed(actor: Actor, decided, auto, chosen: list, now: datetime) -> dict[str, Any]:
    """Submission to final decision (people's decisions), each level's wait, and what is
    pending now."""
    overall = _percentiles(_seconds(_A.decided_at, _A.submitted_at), [], and_(decided, ~auto))
    size, median, p90 = _median_and_p90(overall)

    wait = _seconds(_S.decided_at, _S.started_at)
    steps_of_decided = and_(
        decided, _S.approval_id == _A.id, _S.decided_at.is_not(None), _S.started_at.is_not(None)
    )
    rows = _percentiles(
        wait, [_S.level_rank, _S.level_name], steps_of_decided, _S.level_rank, _S.level_name
    )
    by_level: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        by_level.setdefault((row.level_rank, row.level_name), []).append(row)
    levels = []
    for (rank, name), level_rows in sorted(by_level.items()):
        steps, level_median, level_p90 = _median_and_p90(level_rows)
        levels.append(
            {
                "level": name,
                "rank": rank,
                "steps": steps,
                "median_seconds": level_median,
                "p90_seconds": level_p90,
            }
        )
    return {
        "decided": size,
        "median_seconds": median,
        "p90_seconds": p90,
        "levels": levels,
        "pending": _pending(actor, chosen, now),
    }


def _pending(actor: Actor, chosen: list, now: datetime) -> dict[str, Any]:
    """The requests pending now, by how long since they were submitted, and the oldest."""
    pending = and_(*chosen, _A.status == ApprovalStatus.PENDING.value)
    bounds = [now - timedelta(days=days) for days in reversed(PENDING_AGES[1:])]
    # Bucket 0 is the oldest (submitted before now - 30 days): count from the other end.
    age = _bucket(_A.submitted_at, bounds).label("age")
    counts = dict(db.session.execute(select(age, func.count()).where(pending).group_by(age)).all())
    ages = []
    for index, low in enumerate(PENDING_AGES):
        high = PENDING_AGES[index + 1] if index + 1 < len(PENDING_AGES) else None
        if low == 0:
            label = f"under {high} day"
        elif high is None:
            label = f"{low} days +"
        else:
            label = f"{low}–{high} days"
        count = counts.get(len(PENDING_AGES) - 1 - index, 0)
        ages.append({"label": label, "min_days": low, "max_days": high, "count": count})
    oldest = db.session.execute(
        select(_A.id, _A.title, _A.requested_by_id, _A.submitted_at, _A.awaiting_level_id)
        .where(pending)
        .order_by(_A.submitted_at, _A.id)
        .limit(OLDEST_PENDING)
    ).all()
    names = member_names(actor, {row.requested_by_id for row in oldest})
    level_ids = {row.awaiting_level_id for row in oldest if row.awaiting_level_id}
    levels = (
        dict(
            db.session.execute(
                select(ApprovalLevel.id, ApprovalLevel.name).where(ApprovalLevel.id.in_(level_ids))
            ).all()
        )
        if level_ids
        else {}
    )
    return {
        "count": sum(counts.values()),
        "ages": ages,
        "oldest": [
            {
                "id": row.id,
                "title": row.title,
                "requested_by": row.requested_by_id,
                "requested_by_name": names.get(row.requested_by_id, row.requested_by_id or ""),
                "level": levels.get(row.awaiting_level_id),
                "age_seconds": max(0, int((now - row.submitted_at).total_seconds())),
            }
            for row in oldest
        ],
    }


def _outcomes(actor: Actor, counts: dict, chosen: list, period: Period) -> dict:
    """How the rounds of review that ended in the period ended."""
    in_period_at = lambda column: and_(column >= period.since, column < period.until)  # noqa: E731
    changes = db.session.execute(
        select(func.count())
        .select_from(Decision.__table__.join(Approval.__table__, _A.id == Decision.approval_id))
        .where(
            Decision.organization_id == actor.organization_id,
            Decision.type == DecisionType.REQUEST_CHANGES.value,
            in_period_at(Decision.created_at),
            *chosen,
        )
    ).scalar_one()
    recalled = db.session.execute(
        select(func.count())
        .select_from(Event.__table__.join(Approval.__table__, _A.id == Event.approval_id))
        .where(
            Event.organization_id == actor.organization_id,
            Event.type == "approval.recalled",
            in_period_at(Event.created_at),
            *chosen,
        )
    ).scalar_one()
    ended = {
        "approved": counts["approved"],
        "rejected": counts["rejected"],
        "changes_requested": changes,
        "recalled": recalled,
    }
    total = sum(ended.values())
    return {
        **ended,
        "total": total,
        **{f"{name}_rate": percent_of(count, total) for name, count in ended.items()},
        "auto_approved": counts["auto"],
        "auto_approved_share": percent_of(counts["auto"], counts["approved"]),
    }
