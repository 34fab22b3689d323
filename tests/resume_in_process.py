"""Resume a run in a fresh process with a fresh DjangoRunStore (used by tests).

    DATABASE_URL=... python tests/resume_in_process.py <run_id> '<resume_data JSON>'

Prints the run's status after the resume.
"""

import json
import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
django.setup()

from neurocore.runtime.executor import resume_blueprint  # noqa: E402

from runs.runtime import load_project  # noqa: E402
from runs.store import DjangoRunStore  # noqa: E402


def main(run_id: str, resume_data: str) -> None:
    project = load_project(ROOT / "tests" / "project")
    store = DjangoRunStore()
    resume_blueprint(
        run_id,
        project.registry,
        project.config,
        resume_data=json.loads(resume_data),
        run_store=store,
    )
    run = store.load_run(run_id)
    store.close()
    print(run.status if run else "missing")


if __name__ == "__main__":
    main(*sys.argv[1:3])
