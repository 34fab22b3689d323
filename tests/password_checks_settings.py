"""The console's settings, with every password check counted (tests.password_checks)."""

from neurocore_console.settings import *  # noqa: F403

PASSWORD_HASHERS = ["tests.password_checks.CountingPasswordHasher"]
