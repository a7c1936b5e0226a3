"""What the webhooks API accepts and returns (REST, OpenAPI and GraphQL alike)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StringConstraints

from ..audit.schemas import EVENT_KINDS, EVENT_TYPES
from ..schemas import Input, ListOf, ListQuery, Out, Time, optional, text
from .models import DeliveryStatus

MAX_EVENTS = 50
MAX_URL_LENGTH = 2048


def _known_event(value: str) -> str:
    kind = value.removesuffix(".*")
    if value == "*" or value in EVENT_TYPES or (value.endswith(".*") and kind in EVENT_KINDS):
        return value
    raise ValueError(f"{value!r} is not an event type (such as approval.approved, product.*, *)")


def _each_once(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


EventSelector = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=48),
    AfterValidator(_known_event),
]
Events = Annotated[
    list[EventSelector],
    Field(min_length=1, max_length=MAX_EVENTS),
    AfterValidator(_each_once),
]
Url = text(MAX_URL_LENGTH, min_length=1)
Description = text(500)


class EndpointCreate(Input):
    url: Url = Field(description="Where events are POSTed: https, a public address.")
    events: Events = Field(
        ["*"], description='Event types to send (`approval.approved`, `product.*`), or `["*"]`.'
    )
    description: Description = ""
    enabled: StrictBool = True


class EndpointUpdate(Input):
    """Fields left out stay as they are."""

    url: Url = optional()
    events: Events = optional()
    description: Description = optional()
    enabled: StrictBool = optional(description="true enables a disabled endpoint again.")


class DeliveryListQuery(ListQuery):
    status: list[DeliveryStatus] = Field(
        [], description="Only deliveries in these statuses (repeat the parameter)."
    )


class EndpointOut(Out):
    object: Literal["webhook_endpoint"]
    id: str
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the service disabled it (every delivery failed for 3 days), if it did."
    )
    failing_since: Time | None = Field(
        description="Every attempt since this time failed (none since the last success)."
    )
    previous_secret_expires: Time | None = Field(
        validation_alias="previous_secret_expires_at",
        description="After a rotation, the previous secret signs too until this time.",
    )
    created: Time = Field(validation_alias="created_at")
    updated: Time = Field(validation_alias="updated_at")

    @classmethod
    def read(cls, endpoint: Any, **values: Any) -> Any:
        return super().read(endpoint, disabled_reason=endpoint.disabled_reason or None, **values)


class EndpointWithSecretOut(EndpointOut):
    """An endpoint just created, or whose secret was just rotated: the only time its signing
    secret is shown."""

    secret: str = Field(description="The signing secret (`whsec_…`): shown once, store it now.")

    @classmethod
    def with_secret(cls, endpoint: Any, secret: str) -> EndpointWithSecretOut:
        return cls.of(endpoint, secret=secret)


class EndpointList(ListOf):
    data: list[EndpointOut]


class DeliveryOut(Out):
    object: Literal["webhook_delivery"]
    id: str
    endpoint: str = Field(validation_alias="endpoint_id")
    event: str = Field(
        validation_alias="message_id",
        description="The event's id: the `webhook-id` header of every attempt.",
    )
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt: Time | None
    last_attempt: Time | None = Field(validation_alias="last_attempt_at")
    last_status_code: int | None = Field(description="The HTTP status of the last attempt.")
    last_error: str = Field(description="Why the last attempt failed, if it did.")
    latency_ms: int | None = Field(
        validation_alias="last_duration_ms", description="How long the last attempt took."
    )
    response_body: str = Field(
        validation_alias="last_response",
        description="The first 4 KiB of the last response's body.",
    )
    created: Time = Field(validation_alias="created_at")
    delivered: Time | None = Field(validation_alias="delivered_at")

    @classmethod
    def read(cls, delivery: Any) -> Any:
        pending = delivery.status == DeliveryStatus.PENDING
        return super().read(delivery, next_attempt=delivery.next_attempt_at if pending else None)


class DeliveryList(ListOf):
    data: list[DeliveryOut]
