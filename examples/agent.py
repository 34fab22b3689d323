"""An agent process that writes its runs into the console with DjangoRunStore.

    DATABASE_URL=... DJANGO_SECRET_KEY=... python examples/agent.py [blueprint.yaml]

Runs a blueprint of the NeuroCore project at NEUROCORE_PROJECT_ROOT (the demo's
vendor payment by default) exactly as any NeuroCore agent would, with the
console's store: the run appears in the console, waiting for finance.
"""

import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
django.setup()

from neurocore.runtime.executor import execute_blueprint_tracked  # noqa: E402

from runs.runtime import load_project  # noqa: E402
from runs.store import DjangoRunStore  # noqa: E402

project = load_project()  # NEUROCORE_PROJECT_ROOT, default examples/demo
blueprint = sys.argv[1] if len(sys.argv) > 1 else "payment.yaml"
store = DjangoRunStore()
execute_blueprint_tracked(
    project.blueprint(blueprint),
    project.registry,
    project.config,
    initial_data={"invoice": {"vendor": "ACME GmbH", "amount": 980, "number": "INV-7"}},
    run_store=store,
)
run = store.list_runs(limit=1)[0]
print(run.run_id, run.status, run.suspension_reason or "")
store.close()
