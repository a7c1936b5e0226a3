"""``me`` over GraphQL: the key a request authenticated with, its organization and its limit."""

from __future__ import annotations

from functools import lru_cache

import strawberry
from limits import RateLimitItem

from ..api import api_rate_limit, current_api_key
from .authentication import ApiKeyPrincipal
from .models import Environment
from .schemas import ApiKeySessionOut

EnvironmentEnum = strawberry.enum(Environment, name="Environment")


@strawberry.type(name="OrganizationRef")
class OrganizationRef:
    id: strawberry.ID
    name: str
    slug: str


@strawberry.type
class RateLimit:
    limit: int = strawberry.field(description="Requests per window, REST and GraphQL together.")
    window_seconds: int


@strawberry.type(description="The API key of this request.")
class ApiKeySession:
    id: strawberry.ID = strawberry.field(description="The key's id (the same as keyId).")
    key_id: strawberry.ID
    organization: OrganizationRef
    environment: EnvironmentEnum
    read_only: bool
    rate_limit: RateLimit


class _Session(ApiKeySessionOut):
    """``/v2/me``'s shape, with the ``id`` GraphQL gives every object (read as a plain field,
    without a resolver's cost)."""

    @property
    def id(self) -> str:
        return self.key_id


@lru_cache(maxsize=4096)
def _session(principal: ApiKeyPrincipal, rate_limit: RateLimitItem) -> _Session:
    """One key's session as it is now, built and validated once (principals compare by value,
    as for ``GET /v2/me``); the object is only read."""
    return _Session.of(principal, rate_limit)


@strawberry.type
class Query:
    @strawberry.field(description="The key this request authenticated with.")
    def me(self) -> ApiKeySession:
        return _session(current_api_key(), api_rate_limit())
