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
    INPUT_VALUE_CHARS,
    AgentJSONField,
    Checkpoint,
    Run,
    RunInputText,
    RunQuerySet,
    RunTally,
    Stall,
    Step,
    Suspension,
    approval_gates,
)

__all__ = [
    "APPROVAL_SKILL",
    "INPUT_VALUE_CHARS",
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
    "RunInputText",
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
