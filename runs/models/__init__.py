"""The console's models, one module per sub-domain (runs, audit, access, people)."""

from runs.models.access import AccessChange, ApprovalPolicy, BlueprintScope, Delegation
from runs.models.audit import (
    BulkRequest,
    Decision,
    RunAction,
    Source,
    SuspensionNotice,
    Verdict,
)
from runs.models.people import Preference
from runs.models.runs import (
    APPROVAL_SKILL,
    AgentJSONField,
    Checkpoint,
    Run,
    RunQuerySet,
    RunTally,
    Stall,
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
    "Preference",
    "Run",
    "RunAction",
    "RunQuerySet",
    "RunTally",
    "Source",
    "Stall",
    "Step",
    "Suspension",
    "SuspensionNotice",
    "Verdict",
    "approval_gates",
]
