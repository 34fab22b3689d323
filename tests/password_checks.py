"""Counting password checks in servers the tests start (gunicorn), across processes.

``CountingPasswordHasher`` is the MD5 hasher the tests hash passwords with, appending
a line to the file named by ``CONSOLE_TEST_PASSWORD_CHECKS`` each time it checks a
password. ``tests.password_checks_settings`` makes it a server's only hasher.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth.hashers import MD5PasswordHasher

ENV = "CONSOLE_TEST_PASSWORD_CHECKS"


class CountingPasswordHasher(MD5PasswordHasher):
    """MD5 (``algorithm = "md5"``: it checks the tests' hashes) that counts its checks."""

    def verify(self, password: str, encoded: str) -> bool:
        # One short O_APPEND write a check: whole lines even from many processes at once.
        with Path(os.environ[ENV]).open("a") as log:
            log.write(f"{os.getpid()}\n")
        return super().verify(password, encoded)


def checks_counted(path: Path) -> int:
    """How many passwords the servers writing to ``path`` have checked."""
    return len(path.read_text().splitlines()) if path.exists() else 0
