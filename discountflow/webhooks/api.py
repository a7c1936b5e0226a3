"""``/v2/webhook_endpoints`` as JSON: endpoints, their secrets, tests and deliveries."""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..approvals.schemas import NoInput
from ..openapi import operation
from ..schemas import DeletedOut, ListQuery
from . import services
from .schemas import (
    DeliveryList,
    DeliveryListQuery,
    DeliveryOut,
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecretOut,
)

bp = Blueprint("webhooks_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

WEBHOOKS = "Webhooks"


@bp.get("/webhook_endpoints")
@operation(EndpointList, tag=WEBHOOKS)
def list_webhook_endpoints(query: ListQuery):
    """List the webhook endpoints, newest first (owner and admins, or a key)."""
    return EndpointList.page(*services.list_endpoints(current_actor(), query.page()))


@bp.post("/webhook_endpoints")
@operation(EndpointWithSecretOut, tag=WEBHOOKS, status=201)
def create_webhook_endpoint(json: EndpointCreate):
    """Register an endpoint; the answer holds its signing secret, shown this once."""
    endpoint, secret = services.create_endpoint(current_actor(), json)
    return EndpointWithSecretOut.with_secret(endpoint, secret), 201


@bp.get("/webhook_endpoints/<endpoint_id>")
@operation(EndpointOut, tag=WEBHOOKS)
def get_webhook_endpoint(endpoint_id: str):
    """Retrieve an endpoint (never its secret)."""
    return EndpointOut.of(services.get_endpoint(current_actor(), endpoint_id))


@bp.patch("/webhook_endpoints/<endpoint_id>")
@operation(EndpointOut, tag=WEBHOOKS)
def update_webhook_endpoint(endpoint_id: str, json: EndpointUpdate):
    """Change an endpoint's URL, events, description, or enable or disable it."""
    return EndpointOut.of(services.update_endpoint(current_actor(), endpoint_id, json))


@bp.delete("/webhook_endpoints/<endpoint_id>")
@operation(DeletedOut, tag=WEBHOOKS)
def delete_webhook_endpoint(endpoint_id: str):
    """Delete an endpoint and its deliveries."""
    services.delete_endpoint(current_actor(), endpoint_id)
    return DeletedOut(object="webhook_endpoint", id=endpoint_id, deleted=True)


@bp.post("/webhook_endpoints/<endpoint_id>/rotate_secret")
@operation(EndpointWithSecretOut, tag=WEBHOOKS)
def rotate_webhook_secret(endpoint_id: str, json: NoInput):
    """Give the endpoint a new signing secret (shown this once); the previous one keeps
    signing beside it for 24 hours."""
    endpoint, secret = services.rotate_secret(current_actor(), endpoint_id)
    return EndpointWithSecretOut.with_secret(endpoint, secret)


@bp.post("/webhook_endpoints/<endpoint_id>/test")
@operation(DeliveryOut, tag=WEBHOOKS, status=201)
def send_webhook_test(endpoint_id: str, json: NoInput):
    """Send the endpoint a `ping` event now."""
    return DeliveryOut.of(services.send_test(current_actor(), endpoint_id)), 201


@bp.get("/webhook_endpoints/<endpoint_id>/deliveries")
@operation(DeliveryList, tag=WEBHOOKS)
def list_webhook_deliveries(endpoint_id: str, query: DeliveryListQuery):
    """List an endpoint's deliveries, newest first: status, attempts, the last answer."""
    deliveries = services.list_deliveries(current_actor(), endpoint_id, query, query.page())
    return DeliveryList.page(*deliveries)


@bp.post("/webhook_endpoints/<endpoint_id>/deliveries/<delivery_id>/retry")
@operation(DeliveryOut, tag=WEBHOOKS)
def retry_webhook_delivery(endpoint_id: str, delivery_id: str, json: NoInput):
    """Attempt a delivery again now."""
    return DeliveryOut.of(services.retry_delivery(current_actor(), endpoint_id, delivery_id))
