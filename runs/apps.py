from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self) -> None:
        from runs import checks  # noqa: F401 — registers the console's system checks
        from runs.roles import ensure_roles

        # After auth's own post_migrate handler has created the permissions.
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="runs.ensure_roles")
