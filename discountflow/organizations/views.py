"""Settings → General (the organization) and Settings → Members, for the owner and admins.

Views are thin: a form, one service call, a page. Who may do what is the services' to say.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from ..approvals.levels import levels_by_rank
from ..dashboard import current_actor, refusal_flashed, save_form
from ..dashboard.forms import choices, to_percent, validated
from ..pagination import PageRequest
from . import services
from .forms import LevelAssignmentForm, MemberForm, OrganizationForm, RemoveMemberForm, RoleForm
from .schemas import MemberUpdate, OrganizationUpdate

bp = Blueprint("organizations", __name__, template_folder="templates")


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page here is for signed-in members."""


@bp.route("/settings/organization", methods=["GET", "POST"])
def general():
    """The organization's name, auto-approve threshold, how long approved prices hold and when
    waiting requests remind their deciders."""
    actor = current_actor()
    actor.require_manager("change the organization's settings")
    form = OrganizationForm()
    if request.method == "GET":
        organization = services.get_organization(actor)
        form.name.data = organization.name
        form.auto_approve_threshold_percent.data = (
            f"{organization.auto_approve_threshold_bps / 100:g}"
        )
        form.default_validity_days.data = organization.default_validity_days
        form.reminder_interval_hours.data = organization.reminder_interval_hours
        form.custom_line_items.data = organization.custom_line_items

    def save():
        data = {
            "name": form.name.data,
            "auto_approve_threshold_percent": to_percent(
                form.auto_approve_threshold_percent.data, "auto-approve threshold"
            ),
            "default_validity_days": form.default_validity_days.data,
            "reminder_interval_hours": form.reminder_interval_hours.data,
            "custom_line_items": form.custom_line_items.data,
        }
        services.update_organization(actor, validated(OrganizationUpdate, data))

    status = save_form(form, save, "Settings saved.", "organizations.general")
    if not isinstance(status, int):
        return status
    return render_template("organizations/general.html", title="General", form=form), status


def _level_choices(actor) -> list[tuple[str, str]]:
    return [("", "Not an approver")] + [(level.id, level.name) for level in levels_by_rank(actor)]


@bp.route("/settings/members", methods=["GET", "POST"])
def members():
    """List members; add one with a role and an initial password."""
    actor = current_actor()
    actor.require_manager("manage members")
    form = MemberForm()
    status = save_form(
        form,
        lambda: services.add_member(
            actor,
            email=form.email.data,
            password=form.password.data,
            role=form.role.data,
            name=form.name.data or "",
        ),
        f"{form.email.data} was added. Give them their initial password.",
        "organizations.members",
    )
    if not isinstance(status, int):
        return status
    people, _ = services.list_members(actor, PageRequest(100))
    levels = _level_choices(actor)
    return render_template(
        "organizations/members.html",
        title="Members",
        form=form,
        members=sorted(people, key=lambda member: member.created_at),
        levels=levels,
        removable={member.id for member in people if not services.removal_refused(actor, member)},
    ), status


@bp.post("/settings/members/<member_id>/role")
def change_role(member_id: str):
    """Make a member an admin or a plain member."""
    form = RoleForm()
    if not form.validate():
        abort(400)
    member = services.update_member(current_actor(), member_id, MemberUpdate(role=form.role.data))
    flash(f"{member.email} is now {member.role}.", "info")
    return redirect(url_for("organizations.members"), 303)


@bp.post("/settings/members/<member_id>/level")
def change_level(member_id: str):
    """Make a member an approver at a level, or no approver."""
    actor = current_actor()
    form = LevelAssignmentForm()
    form.approval_level.choices = choices(_level_choices(actor))
    if not form.validate():
        abort(400)
    update = MemberUpdate(approval_level=form.approval_level.data or None)
    member = services.update_member(actor, member_id, update)
    flash(f"{member.email}'s approval level was changed.", "info")
    return redirect(url_for("organizations.members"), 303)


@bp.get("/settings/members/<member_id>/remove")
def confirm_remove(member_id: str):
    """Ask before removing a member: they are signed out and told nothing from then on."""
    actor = current_actor()
    actor.require_manager("remove members")
    member = services.get_member(actor, member_id)
    return render_template(
        "organizations/member_remove.html",
        title="Members",
        tab="organizations.members",
        member=member,
        refusal=services.removal_refused(actor, member),
        last_approver=services.last_approver_at(actor, member),
        form=RemoveMemberForm(),
    )


@bp.post("/settings/members/<member_id>/remove")
def remove(member_id: str):
    """Remove a member who left the organization."""
    with refusal_flashed():
        member = services.remove_member(current_actor(), member_id)
        flash(f"{member.email} was removed and signed out everywhere.", "info")
    return redirect(url_for("organizations.members"), 303)
