"""The console's models, one module per sub-domain (runs, audit, access)."""

from runs.models.access import AccessChange, ApprovalPolicy, BlueprintScope, Delegation
from runs.models.audit import (
    BulkRequest,
    Decision,
    GateDeadline,
    RunAction,
    Source,
    SuspensionNotice,
    Verdict,
)
from runs.models.runs import (
    APPROVAL_SKILL,
    AgentJSONField,
    Checkpoint,
    Run,
    RunQuerySet,
    RunTally,
    Step,
    Suspension,
    approval_gates,
)

__all__ = [
    "APPROVAL_SKILL",
    "AccessChange",
    "AgentJSONField",
    "ApprovalPolicy",
    "BlueprintScope",
    "BulkRequest",
    "Checkpoint",
    "Decision",
    "Delegation",
    "GateDeadline",
    "Run",
    "RunAction",
    "RunQuerySet",
    "RunTally",
    "Source",
    "Step",
    "Suspension",
    "SuspensionNotice",
    "Verdict",
    "approval_gates",
]
