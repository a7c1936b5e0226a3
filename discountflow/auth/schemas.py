"""What ``/v2/me`` answers: the calling key, its organization and its rate limit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..schemas import Out, Time


class OrganizationRef(BaseModel):
    object: Literal["organization"]
    id: str
    name: str
    slug: str


class RateLimitOut(BaseModel):
    limit: int
    window_seconds: int


class ApiKeySessionOut(Out):
    object: Literal["api_key_session"]
    organization: OrganizationRef
    key_id: str
    environment: Literal["staging", "production"]
    read_only: bool
    rate_limit: RateLimitOut

    @classmethod
    def of(cls, principal: Any, rate_limit: Any) -> ApiKeySessionOut:
        """The key that authenticated (an ``ApiKeyPrincipal``) and its ``limits`` item."""
        return cls.model_validate(
            {
                "object": "api_key_session",
                "organization": {
                    "object": "organization",
                    "id": principal.organization_id,
                    "name": principal.organization_name,
                    "slug": principal.organization_slug,
                },
                "key_id": principal.key_id,
                "environment": principal.environment,
                "read_only": principal.read_only,
                "rate_limit": {
                    "limit": rate_limit.amount,
                    "window_seconds": rate_limit.get_expiry(),
                },
            }
        )


class ApiKeyOut(Out):
    """An API key as events describe it (webhooks): never its text, nor its hash."""

    object: Literal["api_key"]
    id: str
    environment: Literal["staging", "production"]
    read_only: bool
    last_four: str
    created: Time = Field(validation_alias="created_at")
    expires: Time | None = Field(validation_alias="expires_at")
    replaced: Time | None = Field(validation_alias="replaced_at")
    revoked: Time | None = Field(validation_alias="revoked_at")
    last_used: Time | None = Field(validation_alias="last_used_at")
