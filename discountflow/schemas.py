"""Shapes shared by every API resource: errors, lists, paging, times, percentages and actors.

The pydantic models in each feature's ``schemas.py`` validate what comes in and describe what
goes out: one ``Out`` model per resource, built by its ``of()`` from what the services return.
REST answers with it, the OpenAPI document at ``/v2/openapi.json`` is generated from it, and
GraphQL serves the same objects.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
)

from .currencies import CURRENCIES
from .database import rfc3339
from .pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest

OBJECT_ID_MAX = 32


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(**constraints: Any) -> Any:
    """A field a PATCH may leave out; ``null`` is refused (the type does not admit it)."""
    return Field(default=None, json_schema_extra=_drop_default, **constraints)


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")


def _clean_text(required: bool):
    def clean(value: str) -> str:
        if _CONTROL_CHARACTERS.search(value):
            raise ValueError("must not contain control characters")
        value = value.strip()
        if required and not value:
            raise ValueError("must not be blank")
        return value

    return clean


_ALLOWED = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # what _CONTROL_CHARACTERS refuses, refused


class _CleanTextInSchema:
    """Say in the JSON Schema what ``_clean_text`` enforces: no control characters, and (for a
    required text) more than blanks — so what the document calls valid is accepted."""

    def __init__(self, required: bool) -> None:
        self.pattern = (
            rf"^{_ALLOWED}*[^\s\x00-\x1f\x7f]{_ALLOWED}*$" if required else rf"^{_ALLOWED}*$"
        )

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A string within bounds, without control characters, stored without surrounding blanks.

    The bounds apply to the string as sent (as the document says); a required one must hold
    more than blanks.
    """
    required = min_length > 0
    constraints = [
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_clean_text(required)),
        _CleanTextInSchema(required),
    ]
    return Annotated[StrictStr, *constraints]


def _whole_number(value: Any) -> Any:
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON number")
    return value


# A JSON integer: 3 or 3.0, never "3" or true.
Integer = Annotated[int, BeforeValidator(_whole_number)]


def _rfc3339(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 time such as 2026-01-31T09:30:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first UTC datetime
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


# An RFC 3339 time with its offset, as a UTC datetime.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_in_utc)]

# No control characters (PostgreSQL cannot even compare text holding NUL).
ObjectId = Annotated[
    StrictStr, StringConstraints(max_length=OBJECT_ID_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")
]

# 10^10 minor units a unit; with 10^6 units and 100 lines a total stays below 2^63.
MAX_UNIT_PRICE = 10_000_000_000


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    return code


# An ISO 4217 code (any case, stored upper case); the document lists the codes in circulation.
Currency = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Za-z]{3}$", to_upper=True),
    AfterValidator(_known_currency),
    WithJsonSchema({"type": "string", "enum": sorted(CURRENCIES)}),
]

# A percentage, 0–100, as a JSON number; kept in basis points, so rounded to two decimals.
Percent = Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)]


def to_bps(percent: float) -> int:
    """Round a percentage half up to whole basis points (hundredths of a percent)."""
    return int(Decimal(repr(percent)).scaleb(2).quantize(Decimal(1), ROUND_HALF_UP))


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


# --- output ------------------------------------------------------------------------------------

# A stored UTC time, answered as RFC 3339 to the second: ``2026-01-31T09:30:00Z``.
Time = Annotated[
    AwareDatetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


_MISSING = object()


class Out(BaseModel):
    """A resource as every surface answers it.

    ``of(source)`` builds it from what a service returned: each field is read from the source's
    attribute of the same name, or of the name ``sources`` gives it (``created`` ←
    ``created_at``); a field that is itself an ``Out`` model the source has no attribute for
    is built from the same source (the ``actor`` columns of a decision); keyword arguments give
    the fields that are computed; ``object`` is the resource's one type name. The model
    validates what it is given, so a shape that drifts from the document fails loudly instead
    of answering something else.
    """

    sources: ClassVar[dict[str, str]] = {"created": "created_at", "updated": "updated_at"}

    @classmethod
    def of(cls, source: Any, **values: Any) -> Self:
        return cls.model_validate(cls.values_of(source, **values))

    @classmethod
    def values_of(cls, source: Any, **values: Any) -> dict[str, Any]:
        """The fields ``of`` validates, before validation: a parent model takes a list of
        these for a list of nested models, which pydantic then builds in one pass."""
        reads = cls.__dict__.get("_reads")
        if reads is None:
            reads = {}
            type.__setattr__(cls, "_reads", reads)
        given = tuple(values)  # the same few computed fields at each call site
        read = reads.get(given)
        if read is None:
            read = reads[given] = cls._read_plan(given)
        names, getter, fixed = read
        try:
            found = getter(source)
        except AttributeError:  # a nested model built from the same source, or a mistake
            return cls._values_field_by_field(source, values)
        if len(names) == 1:
            values[names[0]] = found
        else:
            values.update(zip(names, found, strict=True))
        values.update(fixed)
        return values

    @classmethod
    def _read_plan(cls, given: tuple[str, ...]) -> tuple[list[str], Any, list[tuple]]:
        """The fields read from the source when ``given`` are computed: their names, one
        getter for all of them, and the fixed values."""
        names, attributes, fixed = [], [], []
        for name, attribute, value, _nested in cls._plan():
            if name in given:
                continue
            if value is not _MISSING:
                fixed.append((name, value))
            else:
                names.append(name)
                attributes.append(attribute)
        getter = attrgetter(*attributes) if attributes else (lambda source: ())
        return names, getter, fixed

    @classmethod
    def _values_field_by_field(cls, source: Any, values: dict[str, Any]) -> dict[str, Any]:
        for name, attribute, fixed, nested in cls._plan():
            if name in values:
                continue
            if fixed is not _MISSING:  # the type name: one value it can have
                values[name] = fixed
                continue
            value = getattr(source, attribute, _MISSING)
            if value is not _MISSING:
                values[name] = value
            elif nested is not None:
                values[name] = nested.values_of(source)
            else:
                raise AttributeError(f"{cls.__name__}.{name}: the source has no {attribute!r}")
        return values

    @classmethod
    def _plan(cls) -> tuple[tuple[str, str, Any, type[Out] | None], ...]:
        """How each field is read: (name, source attribute, fixed value, nested model)."""
        plan = cls.__dict__.get("_of_plan")
        if plan is None:
            plan = []
            for name, field in cls.model_fields.items():
                fixed = get_args(field.annotation)[0] if name == "object" else _MISSING
                annotation = field.annotation
                nested = (
                    annotation
                    if isinstance(annotation, type) and issubclass(annotation, Out)
                    else None
                )
                plan.append((name, cls.sources.get(name, name), fixed, nested))
            plan = tuple(plan)
            type.__setattr__(cls, "_of_plan", plan)
        return plan


class ActorOut(Out):
    type: Literal["user", "api_key", "system"]
    user: str | None = Field(description="The member, or the owner whose authority a key uses.")
    api_key: str | None = Field(description="The public id of the key that acted, if one did.")
    surface: Literal["api", "graphql", "dashboard", "cli", "system"]

    # The actor columns of a decision, comment or event.
    sources = {"type": "actor_type", "user": "actor_user_id", "api_key": "api_key_id"}


class ListOf(Out):
    """A page of objects, newest first; each feature narrows ``data`` to its ``Out`` model."""

    object: Literal["list"]
    data: list[Any]
    has_more: bool = Field(description="Whether more objects follow this page.")

    @classmethod
    def page(cls, items: list[Any], has_more: bool) -> Self:
        """A page of what a service listed, each item shaped by the list's ``Out`` model."""
        (item,) = get_args(cls.model_fields["data"].annotation)
        shape = item.of if isinstance(item, type) and issubclass(item, Out) else None
        data = [shape(each) for each in items] if shape else items
        return cls.model_validate({"object": "list", "data": data, "has_more": has_more})


class DeletedOut(BaseModel):
    object: str
    id: str
    deleted: Literal[True]
