"""The console's models, a module per sub-domain: runs, states, audit, deadlines, access, people."""

from runs.models.access import AccessChange, ApprovalPolicy, BlueprintScope, Delegation
from runs.models.audit import (
    BulkRequest,
    Decision,
    RunAction,
    Source,
    SuspensionNotice,
    Verdict,
)
from runs.models.deadlines import GateDeadline
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
    Step,
    approval_gates,
)
from runs.models.states import Stall, Suspension

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
    "GateDeadline",
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
