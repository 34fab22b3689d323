"""Blueprint scopes as object permissions: ``user.has_perm("runs.approve_run", run)``.

Django's ``ModelBackend`` answers a permission on no object (the role). This
backend answers the same permission on a run: the role, narrowed by the
blueprint scopes that match the run's blueprint. Views, services, admin hooks,
the CLI and templates (``perms``) all ask through ``has_perm``, so one rule holds.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import BaseBackend

from runs.models import BlueprintScope, Run
from runs.permissions import blueprint_allowed, scopes_for

# Which permission each kind of scope narrows; others (view, delete) follow the role.
SCOPED_PERMISSIONS = {
    "runs.approve_run": BlueprintScope.Action.DECIDE,
    "runs.operate_run": BlueprintScope.Action.OPERATE,
}


class BlueprintScopeBackend(BaseBackend):
    """Answers ``has_perm(perm, run)``: the role permission, then the blueprint scopes."""

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        """Whether ``user_obj`` holds ``perm`` on the run ``obj`` (False for other objects)."""
        if not isinstance(obj, Run) or not user_obj.is_active:
            return False
        if not user_obj.has_perm(perm):  # the role, from the ModelBackend
            return False
        action = SCOPED_PERMISSIONS.get(perm)
        if action is None:
            return True
        return blueprint_allowed(user_obj, obj.blueprint_name, scopes_for(user_obj, action))
