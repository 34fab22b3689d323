"""The console's admin, registered on import (Django's admin autodiscovery).

``base`` holds what every admin shares, ``listing`` the runs list's machinery,
``runs`` the runs, ``audit`` the audits, ``access`` users, groups and scopes.
"""

from runs.admin import access, audit, runs  # noqa: F401 — registers the admins
from runs.admin.listing import RunPaginator

__all__ = ["RunPaginator"]
