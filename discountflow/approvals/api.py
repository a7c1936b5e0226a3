"""``/v2/approvals`` and ``/v2/approval_levels`` as JSON.

Views parse (SpecTree validates the query and body against the models in ``schemas.py``), call
one service and answer its resource's ``Out`` model; every rule lives in the services.
"""

from __future__ import annotations

from flask import Blueprint

from ..api import current_actor, per_key_quota
from ..audit.schemas import EventList
from ..openapi import operation
from ..schemas import DeletedOut, ListQuery
from . import levels, queries, services
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
    LevelCreate,
    LevelList,
    LevelOut,
    LevelUpdate,
    NoInput,
    PreviewOut,
)

bp = Blueprint("approvals_api", __name__, url_prefix="/v2")
per_key_quota(bp)  # one budget per API key over all of /v2 (api.py)

APPROVALS = "Approvals"


HISTORY = "History"
LEVELS = "Approval levels"


# --- approvals ---------------------------------------------------------------------------------


@bp.get("/approvals")
@operation(ApprovalList, tag=APPROVALS)
def list_approvals(query: ApprovalListQuery):
    """List approvals, newest first.

    Members see their own approvals; approvers, admins and the owner (and API keys) see all.
    """
    return ApprovalList.page(*queries.list_approvals(current_actor(), query, query.page()))


@bp.post("/approvals")
@operation(ApprovalOut, tag=APPROVALS, status=201)
def create_approval(json: ApprovalCreate):
    """Create an approval: a draft, or submitted at once with "submit": true.

    Totals and discount percentages are computed from the line items.
    """
    return ApprovalOut.of(services.create_approval(current_actor(), json)), 201


@bp.get("/approvals/<approval_id>")
@operation(ApprovalOut, tag=APPROVALS)
def get_approval(approval_id: str):
    """Retrieve an approval with its line items, totals and current steps."""
    return ApprovalOut.of(queries.get_approval(current_actor(), approval_id))


@bp.patch("/approvals/<approval_id>")
@operation(ApprovalOut, tag=APPROVALS)
def update_approval(approval_id: str, json: ApprovalUpdate):
    """Update a draft or an approval sent back for changes; line_items replaces the list."""
    return ApprovalOut.of(services.update_approval(current_actor(), approval_id, json))


@bp.delete("/approvals/<approval_id>")
@operation(DeletedOut, tag=APPROVALS)
def delete_approval(approval_id: str):
    """Delete a draft."""
    services.delete_approval(current_actor(), approval_id)
    return DeletedOut(object="approval", id=approval_id, deleted=True)


@bp.get("/approvals/<approval_id>/preview")
@operation(PreviewOut, tag=APPROVALS)
def preview_approval(approval_id: str):
    """Show the route a submit would take now: auto-approval, or the steps and required level."""
    approval, route = services.preview(current_actor(), approval_id)
    return PreviewOut.of(approval.id, route)


@bp.post("/approvals/<approval_id>/submit")
@operation(ApprovalOut, tag=APPROVALS)
def submit_approval(approval_id: str, json: NoInput):
    """Submit a draft or a changed approval; its route is frozen now."""
    return ApprovalOut.of(services.submit(current_actor(), approval_id))


@bp.post("/approvals/<approval_id>/approve")
@operation(ApprovalOut, tag=APPROVALS)
def approve_approval(approval_id: str, json: DecisionInput):
    """Approve the active step (eligible approvers only; never who created, edited or
    submitted this round)."""
    return ApprovalOut.of(services.approve(current_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/reject")
@operation(ApprovalOut, tag=APPROVALS)
def reject_approval(approval_id: str, json: CommentRequiredInput):
    """Reject the whole approval (a comment is required)."""
    return ApprovalOut.of(services.reject(current_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/request_changes")
@operation(ApprovalOut, tag=APPROVALS)
def request_changes(approval_id: str, json: CommentRequiredInput):
    """Send the approval back to the requester for changes (a comment is required)."""
    return ApprovalOut.of(services.request_changes(current_actor(), approval_id, json.comment))


@bp.post("/approvals/<approval_id>/recall")
@operation(ApprovalOut, tag=APPROVALS)
def recall_approval(approval_id: str, json: NoInput):
    """Take a pending approval back to draft."""
    return ApprovalOut.of(services.recall(current_actor(), approval_id))


@bp.post("/approvals/<approval_id>/cancel")
@operation(ApprovalOut, tag=APPROVALS)
def cancel_approval(approval_id: str, json: DecisionInput):
    """Cancel a draft, pending or changes-requested approval."""
    return ApprovalOut.of(services.cancel(current_actor(), approval_id, json.comment))


# --- history -----------------------------------------------------------------------------------


@bp.get("/approvals/<approval_id>/decisions")
@operation(DecisionList, tag=HISTORY)
def list_decisions(approval_id: str, query: ListQuery):
    """List an approval's decisions, newest first."""
    return DecisionList.page(*queries.list_decisions(current_actor(), approval_id, query.page()))


@bp.get("/approvals/<approval_id>/comments")
@operation(CommentList, tag=HISTORY)
def list_comments(approval_id: str, query: ListQuery):
    """List an approval's comments, newest first."""
    return CommentList.page(*queries.list_comments(current_actor(), approval_id, query.page()))


@bp.post("/approvals/<approval_id>/comments")
@operation(CommentOut, tag=HISTORY, status=201)
def add_comment(approval_id: str, json: CommentInput):
    """Comment on an approval."""
    return CommentOut.of(services.add_comment(current_actor(), approval_id, json.body)), 201


@bp.get("/approvals/<approval_id>/events")
@operation(EventList, tag=HISTORY)
def list_approval_events(approval_id: str, query: ListQuery):
    """List an approval's audit trail, newest first."""
    events = queries.list_approval_events(current_actor(), approval_id, query.page())
    return EventList.page(*events)


# --- approval levels ---------------------------------------------------------------------------


@bp.get("/approval_levels")
@operation(LevelList, tag=LEVELS)
def list_levels(query: ListQuery):
    """List the approval levels, newest first."""
    return LevelList.page(*levels.list_levels(current_actor(), query.page()))


@bp.post("/approval_levels")
@operation(LevelOut, tag=LEVELS, status=201)
def create_level(json: LevelCreate):
    """Add an approval level (owner and admins)."""
    return LevelOut.of(levels.create_level(current_actor(), json)), 201


@bp.get("/approval_levels/<level_id>")
@operation(LevelOut, tag=LEVELS)
def get_level(level_id: str):
    """Retrieve an approval level."""
    return LevelOut.of(levels.get_level(current_actor(), level_id))


@bp.patch("/approval_levels/<level_id>")
@operation(LevelOut, tag=LEVELS)
def update_level(level_id: str, json: LevelUpdate):
    """Update an approval level (owner and admins); routed steps keep the level they had."""
    return LevelOut.of(levels.update_level(current_actor(), level_id, json))


@bp.delete("/approval_levels/<level_id>")
@operation(DeletedOut, tag=LEVELS)
def delete_level(level_id: str):
    """Delete an approval level no open step waits on (owner and admins)."""
    levels.delete_level(current_actor(), level_id)
    return DeletedOut(object="approval_level", id=level_id, deleted=True)
