"""Access administration: users, groups and scopes, each change recorded."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from runs.errors import ConsoleError
from runs.models import AccessChange
from runs.services.actions import who


def access_change_record(
    *,
    actor: User | None,
    action: str,
    target_type: str,
    target: str,
    details: dict[str, Any] | None = None,
    identity: str | None = None,
) -> AccessChange:
    """Record a change to users, groups or scopes: who, when, what."""
    return AccessChange.objects.create(
        actor=actor,
        actor_identity=who(actor, identity),
        action=action,
        target_type=target_type,
        target=target,
        details=details or {},
    )


def user_exists(username: str) -> bool:
    """Whether a console user has this username."""
    return get_user_model().objects.filter(username=username).exists()


def user_provision(
    *, username: str, email: str | None, groups: list[str], password: str | None
) -> tuple[Any, bool]:
    """Create or update a user in exactly ``groups``; record it in the access audit.

    The password, when given, must pass the configured password validators.
    """
    users = get_user_model().objects
    with transaction.atomic():
        user, created = users.get_or_create(username=username)
        if email is not None:
            user.email = email
        if password is not None:
            try:
                validate_password(password, user)
            except ValidationError as error:
                raise ConsoleError("Password refused: " + " ".join(error.messages)) from None
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.is_active = True
        user.save()
        user.groups.set(Group.objects.filter(name__in=groups))
        access_change_record(
            actor=None,
            identity=f"{getpass.getuser()} (OS user, createuser)",
            action="added" if created else "changed",
            target_type="user",
            target=username,
            details={
                "groups": sorted(groups),
                "email": user.email,
                "password_set": password is not None,
            },
        )
    return user, created
