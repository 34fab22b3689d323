"""Property-based round trips of RunRecord and StepRecord through DjangoRunStore.

For any record NeuroCore can build, DjangoRunStore loads back exactly what
SQLiteRunStore loads back (which is the record after ``json.dumps(default=str)``),
with timestamps at the same instant.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neurocore.persistence import RunRecord, RunStatus, SQLiteRunStore, StepRecord, StepStatus

from runs.store import DjangoRunStore

# Text inside JSON as agents produce it, including NUL and lone surrogates.
any_text = st.text(st.characters(codec=None, categories=None), max_size=30)
# Plain text columns: any encodable text (a lone surrogate fails in SQLiteRunStore
# too; NUL is covered by its own test).
plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
ids = plain_text.filter(bool)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(any_text, json_values, max_size=5)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
nullable_text = st.none() | plain_text
durations = st.none() | st.floats(min_value=0, max_value=1e12)

run_records = st.builds(
    RunRecord,
    run_id=ids,
    blueprint_name=ids,
    blueprint_version=ids,
    blueprint_path=st.none() | ids,
    blueprint_snapshot=json_objects,
    flow_type=st.sampled_from(["sequential", "conditional", "graph"]),
    status=st.sampled_from(list(RunStatus)),
    initial_data=json_objects,
    final_context=st.none() | json_objects,
    error=nullable_text,
    suspended_at_node=st.none() | ids,
    suspension_reason=nullable_text,
    checkpoint_id=st.none() | ids,
    created_at=instants.map(datetime.isoformat),
    updated_at=instants.map(datetime.isoformat),
    duration_ms=durations,
)
step_records = st.builds(
    StepRecord,
    run_id=st.just("placeholder"),
    step_index=st.integers(min_value=0, max_value=2**63 - 1),
    component=ids,
    skill_type=st.none() | ids,
    status=st.sampled_from(list(StepStatus)),
    started_at=instants.map(datetime.isoformat),
    duration_ms=durations,
    error=nullable_text,
    output_keys=st.lists(any_text, max_size=4),
    context_snapshot=st.none() | json_objects,
)


def canonical(record: RunRecord | StepRecord) -> str:
    """A comparable text of a record: JSON text with keys in their stored order (as
    SQLiteRunStore keeps them, and jsonb alone would not), timestamps as instants."""
    data: dict[str, Any] = record.model_dump()
    for field in ("created_at", "updated_at", "started_at"):
        if field in data:
            data[field] = datetime.fromisoformat(data[field]).astimezone(UTC).isoformat()
    return json.dumps(data, default=str)


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=run_records, step=step_records)
def test_records_round_trip_like_sqlite_run_store(
    run: RunRecord, step: StepRecord, tmp_path: Path
) -> None:
    step = step.model_copy(update={"run_id": run.run_id})
    reference = SQLiteRunStore(tmp_path / f"{uuid.uuid4().hex}.db")
    store = DjangoRunStore()
    try:
        for target in (reference, store):
            target.save_run(run)
            target.save_step(step)
        loaded_run, expected_run = store.load_run(run.run_id), reference.load_run(run.run_id)
        assert loaded_run is not None
        assert expected_run is not None
        assert canonical(loaded_run) == canonical(expected_run) == canonical(run)
        assert [canonical(s) for s in store.load_steps(run.run_id)] == [
            canonical(s) for s in reference.load_steps(run.run_id)
        ]
        # What NeuroCore wrote in UTC comes back as the very same text.
        if run.created_at.endswith("+00:00"):
            assert loaded_run.created_at == run.created_at
    finally:
        store.delete_run(run.run_id)
        reference.close()
