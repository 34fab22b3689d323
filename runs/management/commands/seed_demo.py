"""``manage.py seed_demo``: demo users and runs in every status (idempotent)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand

from runs import demo


class Command(BaseCommand):
    help = (
        "Create demo users (one per role) and, once, dozens of demo runs made by "
        "NeuroCore from the demo project's blueprints."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        users = demo.create_demo_users()
        if demo.demo_seeded():
            self.stdout.write("Demo runs already there: nothing added.")
        else:
            tasks_log = logging.getLogger("django.tasks")
            level = tasks_log.level
            if options["verbosity"] < 2:  # not a line per task the seeding runs
                tasks_log.setLevel(logging.WARNING)
            try:
                # No surrounding transaction: NeuroCore's gates write from the store's
                # helper thread, which must not wait for this thread's lock.
                made = demo.seed_demo_runs()
            finally:
                tasks_log.setLevel(level)
            self.stdout.write(self.style.SUCCESS(f"Made {made} demo runs."))
        self.stdout.write("Demo users (username / password / role):")
        for user in users:
            role = "superuser" if user.superuser else user.role
            teams = f", in {', '.join(user.teams)}" if user.teams else ""
            self.stdout.write(f"  {user.username:<6} {user.password:<20} {role}{teams}")
