"""Webhook endpoints and their deliveries over GraphQL: the same services and rules as REST."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..graphql_base import Connection, DateTime, Deleted, actor, check_first, page, validated
from . import services
from .models import DeliveryStatus
from .schemas import (
    DeliveryListQuery,
    DeliveryOut,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecretOut,
)

DeliveryStatusEnum = strawberry.enum(DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type(description="One event sent to one endpoint: attempted until a 2xx.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint: strawberry.ID
    event: strawberry.ID = strawberry.field(description="The event's id: the webhook-id header.")
    event_type: str
    status: DeliveryStatusEnum
    attempts: int
    next_attempt: DateTime | None
    last_attempt: DateTime | None
    last_status_code: int | None
    last_error: str
    latency_ms: int | None
    response_body: str = strawberry.field(description="The first 4 KiB of the last answer.")
    created: DateTime
    delivered: DateTime | None


@strawberry.type(description="A URL that receives the organization's events, signed.")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: DateTime | None
    previous_secret_expires: DateTime | None
    created: DateTime
    updated: DateTime

    # The object is an EndpointOut: ``self`` below is that object.
    @strawberry.field(description="Its deliveries, newest first.")
    def deliveries(
        self, info: Info, first: int, status: list[DeliveryStatusEnum] | None = None
    ) -> list[WebhookDelivery]:
        query = validated(
            DeliveryListQuery,
            {"limit": check_first(first), "status": [each.value for each in status or ()]},
            argument=None,
            names={"limit": "first"},
        )
        found, _ = services.list_deliveries(actor(info), self.id, query, page(first, None))
        return [DeliveryOut.of(delivery) for delivery in found]


@strawberry.type(description="An endpoint with its signing secret: shown once, store it now.")
class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str


@strawberry.input
class WebhookEndpointCreateInput:
    url: str
    events: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.input(description="Fields left out stay as they are.")
class WebhookEndpointUpdateInput:
    url: str | None = strawberry.UNSET
    events: list[str] | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.type
class Query:
    @strawberry.field(description="The webhook endpoints, newest first (owner and admins).")
    def webhook_endpoints(
        self, info: Info, first: int, after: str | None = None
    ) -> Connection[WebhookEndpoint]:
        found, has_more = services.list_endpoints(actor(info), page(first, after))
        return Connection.of([EndpointOut.of(endpoint) for endpoint in found], has_more)

    @strawberry.field(description="One webhook endpoint; null (with an error) when none.")
    def webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpoint | None:
        return EndpointOut.of(services.get_endpoint(actor(info), id))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Register an endpoint; its secret is shown this once.")
    def create_webhook_endpoint(
        self, info: Info, input: WebhookEndpointCreateInput
    ) -> WebhookEndpointWithSecret | None:
        endpoint, secret = services.create_endpoint(actor(info), validated(EndpointCreate, input))
        return EndpointWithSecretOut.with_secret(endpoint, secret)

    @strawberry.mutation(description="Change an endpoint, or enable or disable it.")
    def update_webhook_endpoint(
        self, info: Info, id: strawberry.ID, input: WebhookEndpointUpdateInput
    ) -> WebhookEndpoint | None:
        data = validated(EndpointUpdate, input)
        return EndpointOut.of(services.update_endpoint(actor(info), id, data))

    @strawberry.mutation(description="Delete an endpoint and its deliveries.")
    def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> Deleted | None:
        services.delete_endpoint(actor(info), id)
        return Deleted(object="webhook_endpoint", id=id, deleted=True)

    @strawberry.mutation(description="A new secret (shown once); the old one signs for 24 h.")
    def rotate_webhook_endpoint_secret(
        self, info: Info, id: strawberry.ID
    ) -> WebhookEndpointWithSecret | None:
        endpoint, secret = services.rotate_secret(actor(info), id)
        return EndpointWithSecretOut.with_secret(endpoint, secret)

    @strawberry.mutation(description="Send the endpoint a ping event now.")
    def send_webhook_test(self, info: Info, id: strawberry.ID) -> WebhookDelivery | None:
        return DeliveryOut.of(services.send_test(actor(info), id))

    @strawberry.mutation(description="Attempt a delivery again now.")
    def retry_webhook_delivery(
        self, info: Info, endpoint_id: strawberry.ID, id: strawberry.ID
    ) -> WebhookDelivery | None:
        return DeliveryOut.of(services.retry_delivery(actor(info), endpoint_id, id))
