"""The console's roles as groups, kept present after every migrate and flush.

Migration 0004 creates them; this keeps them there when a flush (tests, a reset)
empties the tables, as Django keeps permissions.
"""

from __future__ import annotations

from typing import Any

# Each role (a group) and the permissions it holds.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    "Viewers": ["view_run", "view_step", "view_decision"],
    "Approvers": ["view_run", "view_step", "view_decision", "approve_run"],
    "Operators": ["view_run", "view_step", "view_decision", "operate_run"],
}


def ensure_roles(**kwargs: Any) -> None:
    """Create the role groups with their permissions where missing (post_migrate)."""
    from django.contrib.auth.models import Group, Permission

    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
        )
