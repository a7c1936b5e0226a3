"""What every feature's GraphQL types share: scalars, connections, the request's context and
actor, inputs validated by the API's pydantic models, and lists bounded by ``first``.

Each feature's ``graphql.py`` declares its types, queries and mutations over its services;
``discountflow/graphql.py`` assembles them into the schema and serves the endpoint. An object
of a GraphQL type is the resource's ``Out`` model itself (the one shape REST answers), so the
types below only name the fields and their GraphQL types; ``tests/test_graphql.py`` holds each
type to its ``Out`` model.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, NewType, TypeVar

import strawberry
from pydantic import BaseModel, TypeAdapter, ValidationError
from strawberry import scalars
from strawberry.types import Info
from strawberry.types.unset import UNSET

from .actors import Actor
from .database import require_usable_id, rfc3339
from .errors import InvalidParameter
from .openapi import parameter_name
from .pagination import MAX_LIMIT, PageRequest
from .schemas import Timestamp

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


# --- scalars -----------------------------------------------------------------------------------


_TIMESTAMP = TypeAdapter(Timestamp)  # the API's own reading of an RFC 3339 time


def _parse_datetime(value: Any) -> datetime:
    return _TIMESTAMP.validate_python(value)


DateTime = NewType("DateTime", datetime)
Long = NewType("Long", int)
JSON = scalars.JSON


def _long(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Long is a whole number")
    return value


# The schema's own scalars (``StrawberryConfig.scalar_map``).
SCALARS = {
    DateTime: strawberry.scalar(
        name="DateTime",
        description="A time in UTC, RFC 3339 to the second: `2026-01-31T09:30:00Z`.",
        serialize=rfc3339,
        parse_value=_parse_datetime,
    ),
    Long: strawberry.scalar(
        name="Long",
        description="A 64-bit whole number, such as an amount in minor units (cents): `12000`.",
        serialize=_long,
        parse_value=_long,
    ),
}


# --- the request -------------------------------------------------------------------------------


class Loader(Generic[K, V]):
    """Lists keyed by approval (its decisions, comments or events), loaded for every approval
    the response holds at once: the first ``load`` reads them for all the keys met so far.

    Strawberry's ``DataLoader`` does this for an asynchronous view, gathering the keys while
    the event loop waits; this view executes synchronously, field by field, so the keys are
    known beforehand instead: each resolver that returns approvals says so (``Context.met``).
    """

    def __init__(self, load_many: Callable[[list[K]], dict[K, list[V]]], keys: dict[K, None]):
        self.load_many = load_many
        self.keys = keys  # the keys met so far (an ordered set, shared with the context)
        self.values: dict[K, list[V]] = {}

    def load(self, key: K) -> list[V]:
        """The values of this key; of every key met, the first time one is asked for."""
        if key not in self.values:
            self.keys.setdefault(key, None)
            wanted = [each for each in self.keys if each not in self.values]
            found = self.load_many(wanted)
            self.values.update((each, found.get(each, [])) for each in wanted)
        return self.values[key]


@dataclasses.dataclass
class Context:
    """What every resolver of one request shares: who asks, the approvals the response holds,
    and the loaders of their nested lists."""

    actor: Actor
    approval_ids: dict[str, None] = dataclasses.field(default_factory=dict)  # ordered set
    loaders: dict[Any, Loader] = dataclasses.field(default_factory=dict)

    def met(self, approval_ids: Iterable[str]) -> None:
        """Remember approvals this request returns (their nested lists load together)."""
        self.approval_ids.update(dict.fromkeys(approval_ids))

    def loader(self, key: Any, load_many: Callable[[list[str]], dict[str, list[Any]]]) -> Loader:
        """The request's loader for ``key`` (such as ``("decisions", first)``), made by
        ``load_many`` the first time."""
        found = self.loaders.get(key)
        if found is None:
            found = self.loaders[key] = Loader(load_many, self.approval_ids)
        return found


def actor(info: Info) -> Actor:
    """The actor of the request: its API key, with the owner's authority, via GraphQL."""
    return info.context.actor


# --- lists -------------------------------------------------------------------------------------


def check_first(first: int) -> int:
    """Every list takes ``first``, 1 to 100 (the limits refuse others before execution too)."""
    if not 1 <= first <= MAX_LIMIT:
        raise InvalidParameter(f"first must be between 1 and {MAX_LIMIT}.", param="first")
    return first


def page(first: int, after: str | None) -> PageRequest:
    """The page a connection asks for: ``first`` objects after the cursor ``after``."""
    if after is not None:
        require_usable_id(after, "after")
    return PageRequest(check_first(first), starting_after=after, after_param="after")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="The cursor to pass as `after` for the next page."
    )


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    """A page of objects, newest first."""

    edges: list[Edge[T]]
    page_info: PageInfo

    @classmethod
    def of(cls, nodes: list[Any], has_more: bool) -> Connection:
        """Shaped objects (each with an ``id``) as a connection; the cursor is the id."""
        return cls(
            edges=[Edge(cursor=node.id, node=node) for node in nodes],
            page_info=PageInfo(has_next_page=has_more, end_cursor=nodes[-1].id if nodes else None),
        )


@strawberry.type
class Deleted:
    object: str
    id: strawberry.ID
    deleted: bool


# --- inputs ------------------------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    """A strawberry input as plain data: fields left out are left out (``UNSET``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {name: _plain(each) for name, each in value.items() if each is not UNSET}
    if isinstance(value, list):
        return [_plain(each) for each in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def validated(
    model: type[BaseModel],
    value: Any,
    argument: str | None = "input",
    names: dict[str, str] | None = None,
) -> Any:
    """Validate an input with the API's pydantic model: the same rules as REST.

    A refusal is a ``parameter_invalid`` naming the input in GraphQL's words
    (``input.lineItems[0].unitPrice``; ``names`` renames fields, such as ``limit`` to
    ``first``). ``None`` values of a plain dict of arguments count as left out.
    """
    if isinstance(value, dict):
        value = {name: each for name, each in value.items() if each is not None}
    try:
        return model.model_validate(_plain(value))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        names = names or {}
        parts = [names.get(p, _camel(p)) if isinstance(p, str) else p for p in first["loc"]]
        param = parameter_name((argument, *parts) if argument else tuple(parts))
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidParameter(f"Invalid {param}: {message.rstrip('.')}.", param=param) from error
