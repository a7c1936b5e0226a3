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
from typing import Annotated, Any, Literal, Self, get_args

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


class Out(BaseModel):
    """A resource as every surface answers it: REST, the OpenAPI document, GraphQL, webhooks.

    ``of(source, **computed)`` builds it from what a service returned with pydantic's own
    ``from_attributes``: each field is read from the source's attribute of the same name, or of
    the name its ``validation_alias`` gives (``created`` ← ``created_at``); keyword arguments
    give the fields that are computed; ``object`` is the resource's one type name. The model
    validates what it is given, so a shape that drifts from the document fails loudly instead
    of answering something else.

    ``read(source, …)`` is what ``of`` validates: a model whose fields are computed says how in
    its ``read``, and a model holding others (an approval's line items, a page's objects) reads
    them with theirs, so that pydantic validates the whole in one call.
    """

    model_config = ConfigDict(from_attributes=True, validate_by_name=True, validate_by_alias=True)

    @classmethod
    def read(cls, source: Any, **computed: Any) -> Any:
        """The source as ``of`` validates it, with the computed fields (and ``object``) given."""
        field = cls.model_fields.get("object")
        if field is not None:
            computed.setdefault("object", get_args(field.annotation)[0])
        return _Computed(source, computed) if computed else source

    @classmethod
    def of(cls, source: Any, **computed: Any) -> Self:
        return cls.model_validate(cls.read(source, **computed))


class _Computed:
    """A source's attributes, with some given instead (what ``Out.of`` validates)."""

    __slots__ = ("_source", "_given")

    def __init__(self, source: Any, given: dict[str, Any]) -> None:
        self._source, self._given = source, given

    def __getattr__(self, name: str) -> Any:
        given = self._given
        return given[name] if name in given else getattr(self._source, name)


# Who acted, read from the actor columns of a decision, comment or event.
class ActorOut(Out):
    type: Literal["user", "api_key", "system"] = Field(validation_alias="actor_type")
    user: str | None = Field(
        validation_alias="actor_user_id",
        description="The member, or the owner whose authority a key uses.",
    )
    api_key: str | None = Field(
        validation_alias="api_key_id",
        description="The public id of the key that acted, if one did.",
    )
    surface: Literal["api", "graphql", "dashboard", "cli", "system"]


class Recorded(Out):
    """A decision, comment or event: its ``actor`` is read from its own actor columns."""

    @classmethod
    def read(cls, row: Any, **computed: Any) -> Any:
        return super().read(row, actor=row, **computed)


class ListOf(Out):
    """A page of objects, newest first; each feature narrows ``data`` to its ``Out`` model."""

    object: Literal["list"]
    data: list[Any]
    has_more: bool = Field(description="Whether more objects follow this page.")

    @classmethod
    def page(cls, items: list[Any], has_more: bool) -> Self:
        """A page of what a service listed, each item shaped by the list's ``Out`` model."""
        (item,) = get_args(cls.model_fields["data"].annotation)
        if isinstance(item, type) and issubclass(item, Out):
            items = [item.read(each) for each in items]
        return cls.model_validate({"object": "list", "data": items, "has_more": has_more})


class DeletedOut(BaseModel):
    object: str
    id: str
    deleted: Literal[True]
