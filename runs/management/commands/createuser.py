"""``manage.py createuser``: create or update a console user in its roles."""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.errors import ConsoleError
from runs.services.access import user_exists, user_provision

# The --role names and the groups they stand for.
ROLE_GROUPS = {"viewer": "Viewers", "approver": "Approvers", "operator": "Operators"}


class Command(BaseCommand):
    help = (
        "Create or update a user in roles (viewer, approver, operator) and extra groups. "
        "The password comes from --password-stdin, or a generated one is printed once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            action="append",
            choices=sorted(ROLE_GROUPS),
            default=[],
            required=True,
            help="A role; repeat for several.",
        )
        parser.add_argument("--email", default=None, help="Email address (for notifications).")
        parser.add_argument(
            "--group", action="append", default=[], help="Another group (e.g. Finance); repeat."
        )
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the password from standard input."
        )

    def handle(
        self,
        *,
        username: str,
        role: list[str],
        email: str | None,
        group: list[str],
        password_stdin: bool,
        **_: Any,
    ) -> None:
        groups = [ROLE_GROUPS[name] for name in role] + group
        missing = sorted(
            set(groups) - set(Group.objects.filter(name__in=groups).values_list("name", flat=True))
        )
        if missing:
            raise CommandError(
                f"No such group: {', '.join(missing)}. Create it in the admin first."
            )
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise CommandError("No password on standard input.")
        generated = password is None and not user_exists(username)
        if generated:
            password = secrets.token_urlsafe(16)
        try:
            user, created = user_provision(
                username=username, email=email, groups=groups, password=password
            )
        except ConsoleError as error:
            raise CommandError(str(error)) from None
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {user.get_username()} in {', '.join(sorted(groups))}.")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
