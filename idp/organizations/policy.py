"""Who may do what in an organization: one table, checked on the server for every action.

Roles (:class:`~idp.models.Role`): the *owner* is the organization's legal representative;
*admins* run it day to day; *members* belong to it. Someone who is not a member may do nothing
(``None`` below). Two rules sit on top of the table, because they depend on the target:

- only owners grant the owner role or take it away (change an owner's role, remove an owner);
  inviting someone as an owner grants it, so only owners do that too (:func:`may_invite`);
- the last owner can be neither demoted, nor removed, nor leave: an organization always has
  someone legally responsible for it.
"""

from __future__ import annotations

import enum

from idp.models import Role


class Action(enum.StrEnum):
    """Every action on an organization that an endpoint offers."""

    VIEW = "view"  # see the organization (name, logo) and switch to it
    VIEW_MEMBERS = "view_members"
    VIEW_ACTIVITY = "view_activity"
    RENAME = "rename"
    BRANDING = "branding"
    INVITE = "invite"
    CHANGE_ROLE = "change_role"
    REMOVE_MEMBER = "remove_member"
    MANAGE_OWNERS = "manage_owners"  # grant or take away the owner role, remove an owner
    UNLOCK_MEMBER = "unlock_member"
    LOCKOUT_POLICY = "lockout_policy"
    LEAVE = "leave"
    DELETE = "delete"


_MANAGE = frozenset(
    {
        Action.VIEW,
        Action.VIEW_MEMBERS,
        Action.VIEW_ACTIVITY,
        Action.RENAME,
        Action.BRANDING,
        Action.INVITE,
        Action.CHANGE_ROLE,
        Action.REMOVE_MEMBER,
        Action.UNLOCK_MEMBER,
        Action.LOCKOUT_POLICY,
        Action.LEAVE,
    }
)

ALLOWED: dict[Role | None, frozenset[Action]] = {
    Role.OWNER: _MANAGE | {Action.MANAGE_OWNERS, Action.DELETE},
    Role.ADMIN: _MANAGE,
    Role.MEMBER: frozenset({Action.VIEW, Action.LEAVE}),
    None: frozenset(),
}

MANAGERS = (Role.OWNER, Role.ADMIN)


def allows(role: Role | None, action: Action) -> bool:
    """Whether someone with ``role`` in an organization (None: not a member) may do ``action``."""
    return action in ALLOWED[role]


def needs_owner(current: Role, new: Role | None) -> bool:
    """Whether changing a member's role from ``current`` to ``new`` (None: removing them)
    touches ownership, which only owners may do."""
    return Role.OWNER in (current, new)


def may_invite(role: Role | None, invited: Role) -> bool:
    """Whether someone with ``role`` (None: not a member) may invite someone as ``invited``.

    Checked when the invitation is sent and again when it is accepted: an invitation grants
    its role with the rights its author has *then*, not the ones they had when sending it."""
    if not allows(role, Action.INVITE):
        return False
    return invited is not Role.OWNER or allows(role, Action.MANAGE_OWNERS)
