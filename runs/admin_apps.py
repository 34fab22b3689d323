"""Django's admin app with the console's site (no model imports: loaded with the apps)."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """``django.contrib.admin`` whose default ``admin.site`` is the console's."""

    default_site = "runs.admin_site.ConsoleAdminSite"
