"""NeuroCore's ``RunStore`` on the Django ORM.

``DjangoRunStore`` behaves exactly like NeuroCore's ``SQLiteRunStore``: the same
upserts (and the same fields an update changes), newest-first listing, cascade
delete, and JSON stored the way ``json.dumps(value, default=str)`` stores it. It
is the only place where ORM rows and NeuroCore's pydantic records meet.

It works wherever NeuroCore calls it:

- from plain threads (the DAG executor, agents' own threads): each thread uses
  its own Django connection, as Django always does;
- from inside a running event loop (NeuroCore's async path, used by every
  blueprint with an approval gate), where Django refuses synchronous queries:
  the work is handed to a helper thread owned by the store and waited for.
  ``close()`` closes that thread's database connection and stops it.

Every write is one statement in its own transaction unless the caller already
holds one, so it is committed (and on SQLite synced) when the call returns.
"""

from runs.store.backend import (
    RECONNECT_WITHIN_SECONDS,
    DjangoCheckpointStore,
    DjangoRunStore,
    GateNotDecided,
    UnknownRunError,
    connection_lost,
    reconnecting,
)
from runs.store.records import (
    REJECTION_ERROR,
    checkpoint_values,
    format_timestamp,
    free_text,
    identifier,
    neurocore_status,
    parse_timestamp,
    run_record,
    run_values,
    step_record,
    step_values,
    stored_status,
    stored_statuses,
)
from runs.store.upserts import (
    RUN_UPDATE_FIELDS,
    UPSERT_CHECKPOINT,
    UPSERT_RUN,
    UPSERT_STEP,
    PreparedUpsert,
)

__all__ = [
    "RECONNECT_WITHIN_SECONDS",
    "REJECTION_ERROR",
    "RUN_UPDATE_FIELDS",
    "UPSERT_CHECKPOINT",
    "UPSERT_RUN",
    "UPSERT_STEP",
    "DjangoCheckpointStore",
    "DjangoRunStore",
    "GateNotDecided",
    "PreparedUpsert",
    "UnknownRunError",
    "checkpoint_values",
    "connection_lost",
    "format_timestamp",
    "free_text",
    "identifier",
    "neurocore_status",
    "parse_timestamp",
    "reconnecting",
    "run_record",
    "run_values",
    "step_record",
    "step_values",
    "stored_status",
    "stored_statuses",
]
