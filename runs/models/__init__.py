"""The console's models, one module per sub-domain (runs, audit, access)."""

from runs.models.access import AccessChange, BlueprintScope
from runs.models.audit import (
    BulkRequest,
    Decision,
    RunAction,
    Source,
    SuspensionNotice,
    Verdict,
)
from runs.models.runs import (
    APPROVAL_SKILL,
    INPUT_VALUE_CHARS,
    AgentJSONField,
    Checkpoint,
    Run,
    RunInputText,
    RunQuerySet,
    RunTally,
    Step,
    Suspension,
    approval_gates,
)

__all__ = [
    "APPROVAL_SKILL",
    "INPUT_VALUE_CHARS",
    "AccessChange",
    "AgentJSONField",
    "BlueprintScope",
    "BulkRequest",
    "Checkpoint",
    "Decision",
    "Run",
    "RunAction",
    "RunInputText",
    "RunQuerySet",
    "RunTally",
    "Source",
    "Step",
    "Suspension",
    "SuspensionNotice",
    "Verdict",
    "approval_gates",
]
