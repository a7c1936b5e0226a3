"""``/v2/approvals``, ``/v2/approval_levels`` and ``/v2/events`` as JSON.

Views parse (SpecTree validates the query and body against the models in ``schemas.py``), call
one service and shape the response; every rule lives in ``services.py``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from ..auth.services import Actor, current_api_key
from ..database import rfc3339
from ..openapi import operation
from ..schemas import ListQuery, percent_of, to_percent
from . import services
from .schemas import (
    ApprovalCreate,
    ApprovalList,
    ApprovalListQuery,
    ApprovalOut,
    ApprovalUpdate,
    CommentInput,
    CommentList,
    CommentOut,
    CommentRequiredInput,
    DecisionInput,
    DecisionList,
    DeletedOut,
    EventList,
    LevelCreate,
    LevelList,
    LevelOut,
    LevelUpdate,
    NoInput,
    PreviewOut,
)

bp = Blueprint("approvals_api", __name__)

APPROVALS = "Approvals"
HISTORY = "History"
LEVELS = "Approval levels"


def _actor() -> Actor:
    return Actor.for_api_key(current_api_key())


# --- shaping -----------------------------------------------------------------------------------


def actor_json(row: Any) -> dict[str, Any]:
    return {
        "type": row.actor_type,
        "user": row.actor_user_id,
        "api_key": row.api_key_id,
        "surface": row.surface,
    }


def line_item_json(item: Any) -> dict[str, Any]:
    list_amount = item.quantity * item.unit_list_price
    amount = item.quantity * item.unit_price
    return {
        "object": "line_item",
        "id": item.id,
        "sku": item.sku,
        "description": item.description,
        "quantity": item.quantity,
        "unit_list_price": item.unit_list_price,
        "unit_price": item.unit_price,
        "list_amount": list_amount,
        "amount": amount,
        "discount_amount": list_amount - amount,
        "discount_percent": percent_of(
            item.unit_list_price - item.unit_price, item.unit_list_price
        ),
    }


def step_json(step: Any) -> dict[str, Any]:
    return {
        "object": "approval_step",
        "id": step.id,
        "position": step.position,
        "approval_level": step.approval_level_id,
        "level_name": step.level_name,
        "level_rank": step.level_rank,
        "status": step.status,
        "decided_by": step.decided_by_id,
        "decided": rfc3339(step.decided_at),
    }


def approval_json(view: services.ApprovalView) -> dict[str, Any]:
    approval = view.approval
    return {
        "object": "approval",
        "id": approval.id,
        "title": approval.title,
        "customer": approval.customer,
        "deal_reference": approval.deal_reference,
        "currency": approval.currency,
        "justification": approval.justification,
        "status": view.status,
        "requested_by": approval.requested_by_id,
        "line_items": [line_item_json(item) for item in view.line_items],
        "list_amount": approval.list_amount,
        "amount": approval.amount,
        "discount_amount": approval.list_amount - approval.amount,
        "discount_percent": percent_of(
            approval.list_amount - approval.amount, approval.list_amount
        ),
        "max_line_discount_percent": to_percent(approval.max_line_discount_bps),
        "required_approval_level": approval.required_level_id,
        "awaiting_approval_level": approval.awaiting_level_id,
        "steps": [step_json(step) for step in view.steps],
        "submitted": rfc3339(approval.submitted_at),
        "decided": rfc3339(approval.decided_at),
        "valid_until": rfc3339(approval.valid_until),
        "metadata": approval.metadata_,
        "created": rfc3339(approval.created_at),
        "updated": rfc3339(approval.updated_at),
    }


def decision_json(decision: Any) -> dict[str, Any]:
    return {
        "object": "decision",
        "id": decision.id,
        "approval": decision.approval_id,
        "step": decision.step_id,
        "type": decision.type,
        "comment": decision.comment,
        "actor": actor_json(decision),
        "created": rfc3339(decision.created_at),
    }


def comment_json(comment: Any) -> dict[str, Any]:
    return {
        "object": "comment",
        "id": comment.id,
        "approval": comment.approval_id,
        "body": comment.body,
        "actor": actor_json(comment),
        "created": rfc3339(comment.created_at),
    }


def event_json(event: Any) -> dict[str, Any]:
    return {
        "object": "event",
        "id": event.id,
        "type": event.type,
        "approval": event.approval_id,
        "actor": actor_json(event),
        "data": event.data,
        "created": rfc3339(event.created_at),
    }


def amount_cap_json(level: Any) -> dict[str, Any] | None:
    if level.max_discount_amount is None:
        return None
    return {"amount": level.max_discount_amount, "currency": level.max_discount_currency}


def level_json(level: Any) -> dict[str, Any]:
    return {
        "object": "approval_level",
        "id": level.id,
        "name": level.name,
        "rank": level.rank,
        "max_discount_percent": to_percent(level.max_discount_bps),
        "max_discount_amount": amount_cap_json(level),
        "created": rfc3339(level.created_at),
        "updated": rfc3339(level.updated_at),
    }


def preview_json(approval: Any, route: services.Route) -> dict[str, Any]:
    return {
        "object": "approval_route",
        "approval": approval.id,
        "auto_approve": route.auto_approve,
        "max_line_discount_percent": to_percent(route.max_line_discount_bps),
        "auto_approve_threshold_percent": to_percent(route.threshold_bps),
        "required_approval_level": route.required.id if route.required else None,
        "steps": [
            {
                "position": position,
                "approval_level": level.id,
                "level_name": level.name,
                "level_rank": level.rank,
                "max_discount_percent": to_percent(level.max_discount_bps),
                "max_discount_amount": amount_cap_json(level),
            }
            for position, level in enumerate(route.levels, start=1)
        ],
    }


def list_json(rows: list[Any], has_more: bool, shape) -> dict[str, Any]:
    return {"object": "list", "data": [shape(row) for row in rows], "has_more": has_more}


# --- approvals ---------------------------------------------------------------------------------


@bp.get("/approvals")
@operation(ApprovalList, tag=APPROVALS)
def list_approvals(query: ApprovalListQuery):
    """List approvals, newest first.

    Members see their own approvals; approvers, admins and the owner (and API keys) see all.
    """
    actor, page = _actor(), query.page()
    if services.lists_render_in_database():
        body = services.approvals_page_json(actor, query, page)
        return Response(body, mimetype="application/json")
    views, has_more = services.list_approvals(actor, query, page)
    return list_json(views, has_more, approval_json)


@bp.post("/approvals")
@operation(ApprovalOut, tag=APPROVALS, status=201)
def create_approval(json: ApprovalCreate):
    """Create an approval: a draft, or submitted at once with "submit": true.

    Totals and discount percentages are computed from the line items.
    """
    return approval_json(services.create_approval(_actor(), json)), 201


@bp.get("/approvals/<approval_id>")
@operation(ApprovalOut, tag=APPROVALS)
def get_approval(approval_id: str):
    """Retrieve an approval with its line items, totals and current steps."""
    return approval_json(services.get_approval(_actor(), approval_id))


@bp.patch("/approvals/<approval_id>")
@operation(ApprovalOut, tag=APPROVALS)
def update_approval(approval_id: str, json: ApprovalUpdate):
    """Update a draft or an approval sent back for changes; line_items replaces the list."""
    return approval_json(services.update_approval(_actor(), approval_id, json))


@bp.delete("/approvals/<approval_id>")
@operation(DeletedOut, tag=APPROVALS)
def delete_approval(approval_id: str):
    """Delete a draft."""
    services.delete_approval(_actor(), approval_id)
    return {"object": "approval", "id": approval_id, "deleted": True}


@bp.get("/approvals/<approval_id>/preview")
@operation(PreviewOut, tag=APPROVALS)
def preview_approval(approval_id: str):
    """Show the route a submit would take now: auto-approval, or the steps and required level."""
    return preview_json(*services.preview(_actor(), approval_id))


@bp.post("/approvals/<approval_id>/submit")
@operation(ApprovalOut, tag=APPROVALS)
def submit_approval(approval_id: str, json: NoInput):
    """Submit a draft or a changed approval; its route is frozen now."""
    return approval_json(services.submit(_actor(), approval_id))


@bp.post("/approvals/<approval_id>/approve")
@operation(ApprovalOut, tag=APPROVALS)
def approve_approval(approval_id: str, json: DecisionInput):
    """Approve the active step (eligible approvers only; never the requester)."""
    return approval_json(services.approve(_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/reject")
@operation(ApprovalOut, tag=APPROVALS)
def reject_approval(approval_id: str, json: CommentRequiredInput):
    """Reject the whole approval (a comment is required)."""
    return approval_json(services.reject(_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/request_changes")
@operation(ApprovalOut, tag=APPROVALS)
def request_changes(approval_id: str, json: CommentRequiredInput):
    """Send the approval back to the requester for changes (a comment is required)."""
    return approval_json(services.request_changes(_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/recall")
@operation(ApprovalOut, tag=APPROVALS)
def recall_approval(approval_id: str, json: NoInput):
    """Take a pending approval back to draft."""
    return approval_json(services.recall(_actor(), approval_id))


@bp.post("/approvals/<approval_id>/cancel")
@operation(ApprovalOut, tag=APPROVALS)
def cancel_approval(approval_id: str, json: DecisionInput):
    """Cancel a draft, pending or changes-requested approval."""
    return approval_json(services.cancel(_actor(), approval_id, json.comment))


# --- history -----------------------------------------------------------------------------------


@bp.get("/approvals/<approval_id>/decisions")
@operation(DecisionList, tag=HISTORY)
def list_decisions(approval_id: str, query: ListQuery):
    """List an approval's decisions, newest first."""
    return list_json(*services.list_decisions(_actor(), approval_id, query.page()), decision_json)


@bp.get("/approvals/<approval_id>/comments")
@operation(CommentList, tag=HISTORY)
def list_comments(approval_id: str, query: ListQuery):
    """List an approval's comments, newest first."""
    return list_json(*services.list_comments(_actor(), approval_id, query.page()), comment_json)


@bp.post("/approvals/<approval_id>/comments")
@operation(CommentOut, tag=HISTORY, status=201)
def add_comment(approval_id: str, json: CommentInput):
    """Comment on an approval."""
    return comment_json(services.add_comment(_actor(), approval_id, json.body)), 201


@bp.get("/approvals/<approval_id>/events")
@operation(EventList, tag=HISTORY)
def list_approval_events(approval_id: str, query: ListQuery):
    """List an approval's audit trail, newest first."""
    return list_json(
        *services.list_approval_events(_actor(), approval_id, query.page()), event_json
    )


@bp.get("/events")
@operation(EventList, tag=HISTORY)
def list_events(query: ListQuery):
    """List the organization's audit trail, newest first (owner and admins)."""
    return list_json(*services.list_events(_actor(), query.page()), event_json)


# --- approval levels ---------------------------------------------------------------------------


@bp.get("/approval_levels")
@operation(LevelList, tag=LEVELS)
def list_levels(query: ListQuery):
    """List the approval levels, newest first."""
    return list_json(*services.list_levels(_actor(), query.page()), level_json)


@bp.post("/approval_levels")
@operation(LevelOut, tag=LEVELS, status=201)
def create_level(json: LevelCreate):
    """Add an approval level (owner and admins)."""
    return level_json(services.create_level(_actor(), json)), 201


@bp.get("/approval_levels/<level_id>")
@operation(LevelOut, tag=LEVELS)
def get_level(level_id: str):
    """Retrieve an approval level."""
    return level_json(services.get_level(_actor(), level_id))


@bp.patch("/approval_levels/<level_id>")
@operation(LevelOut, tag=LEVELS)
def update_level(level_id: str, json: LevelUpdate):
    """Update an approval level (owner and admins); routed steps keep the level they had."""
    return level_json(services.update_level(_actor(), level_id, json))


@bp.delete("/approval_levels/<level_id>")
@operation(DeletedOut, tag=LEVELS)
def delete_level(level_id: str):
    """Delete an approval level no open step waits on (owner and admins)."""
    services.delete_level(_actor(), level_id)
    return {"object": "approval_level", "id": level_id, "deleted": True}
