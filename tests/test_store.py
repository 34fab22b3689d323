"""The RunStore contract, run with identical assertions against NeuroCore's
stores (in-memory and SQLite) and the console's DjangoRunStore.

``RunStoreContract`` holds for every store. ``DurableRunStoreContract`` holds for
stores that serialise to a database (SQLiteRunStore and DjangoRunStore), where
values JSON cannot hold are stringified and a step needs its run.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from neurocore.persistence import (
    InMemoryRunStore,
    RunRecord,
    RunStatus,
    RunStore,
    SQLiteRunStore,
    StepRecord,
    StepStatus,
)

from runs.models import Checkpoint, Run, Step
from runs.store import DjangoRunStore, neurocore_status

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_run(**overrides: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "run_id": uuid.uuid4().hex,
        "blueprint_name": "payment",
        "blueprint_version": "2.1",
        "blueprint_path": "/srv/agents/blueprints/payment.yaml",
        "blueprint_snapshot": {"name": "payment", "components": [{"name": "a", "type": "b"}]},
        "flow_type": "sequential",
        "initial_data": {"amount": 120, "currency": "EUR"},
    }
    fields.update(overrides)
    return RunRecord(**fields)


def make_step(run_id: str, index: int, **overrides: Any) -> StepRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "step_index": index,
        "component": f"component_{index}",
        "skill_type": "prepare",
        "duration_ms": 1.5 * index,
        "output_keys": ["prepared"],
    }
    fields.update(overrides)
    return StepRecord(**fields)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def make_store(kind: str, tmp_path: Path) -> RunStore:
    if kind == "memory":
        return InMemoryRunStore()
    if kind == "sqlite":
        return SQLiteRunStore(tmp_path / "runs.db")
    return DjangoRunStore()


class RunStoreContract:
    """What every RunStore does."""

    def test_save_run_returns_its_id_and_loads_back_equal(self, store: RunStore) -> None:
        run = make_run()
        assert store.save_run(run) == run.run_id
        assert store.load_run(run.run_id) == run

    def test_every_field_round_trips(self, store: RunStore) -> None:
        run = make_run(
            status=RunStatus.SUSPENDED,
            final_context={"data": {"x": [1, 2.5, None, True, "ü"]}, "metadata": {}},
            error="boom",
            suspended_at_node="finance_review",
            suspension_reason="Approve the payment?",
            checkpoint_id="cp-1",
            duration_ms=12.25,
        )
        store.save_run(run)
        assert store.load_run(run.run_id) == run

    def test_unknown_ids_load_as_nothing(self, store: RunStore) -> None:
        assert store.load_run("no-such-run") is None
        assert store.load_steps("no-such-run") == []

    def test_save_run_upsert_changes_only_the_outcome_fields(self, store: RunStore) -> None:
        first = make_run(created_at=at(0), updated_at=at(0))
        store.save_run(first)
        second = first.model_copy(
            update={
                "status": RunStatus.FAILED,
                "final_context": {"data": {"partial": True}},
                "error": "step 2 failed",
                "suspended_at_node": "gate",
                "suspension_reason": "why",
                "checkpoint_id": "cp",
                "updated_at": at(5),
                "duration_ms": 300.0,
            }
        )
        store.save_run(second)
        assert store.load_run(first.run_id) == second

    def test_list_runs_is_newest_first(self, store: RunStore) -> None:
        runs = [make_run(created_at=at(m)) for m in (3, 1, 4, 2)]
        for run in runs:
            store.save_run(run)
        listed = store.list_runs()
        assert [r.created_at for r in listed] == [at(4), at(3), at(2), at(1)]

    def test_list_runs_filters_by_status_blueprint_and_both(self, store: RunStore) -> None:
        specs = [
            ("payment", RunStatus.SUSPENDED),
            ("payment", RunStatus.COMPLETED),
            ("refund", RunStatus.SUSPENDED),
            ("refund", RunStatus.FAILED),
        ]
        ids = {}
        for minute, (bp, status) in enumerate(specs):
            run = make_run(blueprint_name=bp, status=status, created_at=at(minute))
            store.save_run(run)
            ids[bp, status] = run.run_id

        def listed(**filters: Any) -> list[str]:
            return [r.run_id for r in store.list_runs(**filters)]

        assert listed(status=RunStatus.SUSPENDED) == [
            ids["refund", RunStatus.SUSPENDED],
            ids["payment", RunStatus.SUSPENDED],
        ]
        assert listed(blueprint="payment") == [
            ids["payment", RunStatus.COMPLETED],
            ids["payment", RunStatus.SUSPENDED],
        ]
        assert listed(status=RunStatus.FAILED, blueprint="refund") == [
            ids["refund", RunStatus.FAILED]
        ]
        assert listed(status=RunStatus.CANCELLED) == []
        assert listed(blueprint="nope") == []

    def test_list_runs_limit(self, store: RunStore) -> None:
        for minute in range(60):
            store.save_run(make_run(created_at=at(minute)))
        assert len(store.list_runs()) == 50
        assert [r.created_at for r in store.list_runs(limit=3)] == [at(59), at(58), at(57)]
        assert store.list_runs(limit=0) == []
        assert len(store.list_runs(limit=1000)) == 60

    def test_steps_load_in_index_order(self, store: RunStore) -> None:
        run = make_run()
        store.save_run(run)
        steps = [make_step(run.run_id, i) for i in (2, 0, 3, 1)]
        for step in steps:
            store.save_step(step)
        assert store.load_steps(run.run_id) == sorted(steps, key=lambda s: s.step_index)

    def test_save_step_upsert_replaces_the_step(self, store: RunStore) -> None:
        run = make_run()
        store.save_run(run)
        store.save_step(make_step(run.run_id, 0, status=StepStatus.FAILED, error="boom"))
        retried = make_step(
            run.run_id,
            0,
            component="retried",
            skill_type=None,
            status=StepStatus.COMPLETED,
            started_at=at(9),
            duration_ms=None,
            output_keys=[],
            context_snapshot={"data": {"ok": 1}},
        )
        store.save_step(retried)
        assert store.load_steps(run.run_id) == [retried]

    def test_steps_belong_to_their_run(self, store: RunStore) -> None:
        first, second = make_run(), make_run()
        store.save_run(first)
        store.save_run(second)
        store.save_step(make_step(first.run_id, 0))
        store.save_step(make_step(second.run_id, 0, component="other"))
        assert [s.component for s in store.load_steps(first.run_id)] == ["component_0"]
        assert [s.component for s in store.load_steps(second.run_id)] == ["other"]

    def test_delete_run_removes_its_steps_only(self, store: RunStore) -> None:
        doomed, kept = make_run(), make_run()
        for run in (doomed, kept):
            store.save_run(run)
            for i in range(3):
                store.save_step(make_step(run.run_id, i))
        store.delete_run(doomed.run_id)
        assert store.load_run(doomed.run_id) is None
        assert store.load_steps(doomed.run_id) == []
        assert store.load_run(kept.run_id) == kept
        assert len(store.load_steps(kept.run_id)) == 3
        store.delete_run("no-such-run")  # no error

    def test_json_of_any_size_and_content(self, store: RunStore) -> None:
        payload = {
            "unicode": "Zürich → 東京 🚀 \u200b",
            "nested": {"a": [{"b": [{"c": [1, [2, [3, {"d": None}]]]}]}]},
            "numbers": [0, -1, 2**53, 1.5e-300, -0.0],
            "empty": [{}, [], ""],
            "big": "x" * (3 * 1024 * 1024),
        }
        run = make_run(initial_data=payload, final_context={"data": payload})
        store.save_run(run)
        step = make_step(run.run_id, 0, context_snapshot=payload, output_keys=["ü", "big"])
        store.save_step(step)
        assert store.load_run(run.run_id) == run
        assert store.load_steps(run.run_id) == [step]

    def test_empty_final_context_is_not_none(self, store: RunStore) -> None:
        run = make_run(final_context={})
        store.save_run(run)
        loaded = store.load_run(run.run_id)
        assert loaded is not None
        assert loaded.final_context == {}


class DurableRunStoreContract:
    """What stores that serialise to a database do (SQLiteRunStore's behaviour)."""

    def test_values_json_cannot_hold_are_stringified(self, store: RunStore) -> None:
        class Opaque:
            def __str__(self) -> str:
                return "<opaque>"

        data = {
            "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "day": date(2026, 1, 2),
            "price": Decimal("12.30"),
            "tags": ("a", "b"),
            "opaque": Opaque(),
            "keys": {7: "int key", None: "none key"},
        }
        run = make_run(initial_data=data)
        store.save_run(run)
        loaded = store.load_run(run.run_id)
        assert loaded is not None
        assert loaded.initial_data == json.loads(json.dumps(data, default=str))
        assert loaded.initial_data["opaque"] == "<opaque>"

    def test_nan_infinity_nul_and_lone_surrogates_round_trip(self, store: RunStore) -> None:
        data = {
            "nan": math.nan,
            "inf": math.inf,
            "-inf": -math.inf,
            "nul": "before\x00after",
            "surrogate": "\ud800",
            "nested": [{"deep": math.nan}],
            "exponent": [1e16, 1.5e-300, 1.7976931348623157e308],
            "negative_zero": -0.0,
        }
        run = make_run(initial_data=data, final_context={"data": data})
        store.save_run(run)
        step = make_step(run.run_id, 0, context_snapshot=data, output_keys=["\x00"])
        store.save_step(step)
        loaded = store.load_run(run.run_id)
        assert loaded is not None
        assert json.dumps(loaded.initial_data) == json.dumps(data)
        assert json.dumps(loaded.final_context) == json.dumps({"data": data})
        (loaded_step,) = store.load_steps(run.run_id)
        assert json.dumps(loaded_step.context_snapshot) == json.dumps(data)
        assert loaded_step.output_keys == ["\x00"]

    def test_a_document_shaped_like_the_storage_wrapper_round_trips(self, store: RunStore) -> None:
        data = {"__neurocore_console_json__": "[1, 2]"}
        run = make_run(initial_data=data)
        store.save_run(run)
        loaded = store.load_run(run.run_id)
        assert loaded is not None
        assert loaded.initial_data == data

    def test_step_of_unknown_run_raises_and_writes_nothing(self, store: RunStore) -> None:
        with pytest.raises(Exception, match=r"(?i)foreign key|no such run"):
            store.save_step(make_step("no-such-run", 0))
        assert store.load_steps("no-such-run") == []
        assert store.load_run("no-such-run") is None


@pytest.fixture(params=["memory", "sqlite", "django"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "django"])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    store = make_store(request.param, tmp_path)
    yield store
    store.close()


# Committed writes, as an agent process makes them: no test transaction around.
@pytest.mark.django_db(transaction=True)
class TestRunStoreContract(RunStoreContract):
    @pytest.fixture
    def store(self, any_store: RunStore) -> RunStore:
        return any_store


@pytest.mark.django_db(transaction=True)
class TestDurableRunStoreContract(DurableRunStoreContract):
    @pytest.fixture
    def store(self, durable_store: RunStore) -> RunStore:
        return durable_store


# -- DjangoRunStore specifics --------------------------------------------------


@pytest.mark.django_db
def test_records_load_back_the_same_from_either_durable_store(tmp_path: Path) -> None:
    """Same record in, same record out of SQLiteRunStore and DjangoRunStore."""
    sqlite_store, django_store = SQLiteRunStore(tmp_path / "runs.db"), DjangoRunStore()
    data = {"n": math.nan, "when": datetime(2026, 1, 1, tzinfo=UTC), "s": {1, 2}, "z": "\x00"}
    run = make_run(initial_data=data, final_context={"data": data})
    step = make_step(run.run_id, 0, context_snapshot=data)
    for store in (sqlite_store, django_store):
        store.save_run(run)
        store.save_step(step)

    def dumped(store: RunStore) -> str:
        loaded = store.load_run(run.run_id)
        assert loaded is not None
        steps = [s.model_dump() for s in store.load_steps(run.run_id)]
        return json.dumps({"run": loaded.model_dump(), "steps": steps}, default=str)

    assert dumped(django_store) == dumped(sqlite_store)
    sqlite_store.close()


@pytest.mark.django_db
def test_timestamps_are_real_instants_that_round_trip_as_text() -> None:
    store = DjangoRunStore()
    written = "2026-11-22T02:55:49.123456+00:00"
    run = make_run(created_at=written, updated_at="2026-11-22T04:55:49+02:00")
    store.save_run(run)
    row = Run.objects.get(pk=run.run_id)
    assert row.created_at == datetime(2026, 11, 22, 2, 55, 49, 123456, tzinfo=UTC)
    assert row.updated_at == datetime(2026, 11, 22, 2, 55, 49, tzinfo=UTC)
    loaded = store.load_run(run.run_id)
    assert loaded is not None
    assert loaded.created_at == written  # NeuroCore's own text, unchanged
    assert loaded.updated_at == "2026-11-22T02:55:49+00:00"  # same instant, in UTC


@pytest.mark.django_db
def test_malformed_timestamp_is_refused_before_anything_is_written() -> None:
    store = DjangoRunStore()
    with pytest.raises(ValueError, match="Not an ISO-8601 timestamp: 'yesterday'"):
        store.save_run(make_run(created_at="yesterday"))
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_nul_in_free_text_is_stored_the_same_on_every_database() -> None:
    store = DjangoRunStore()
    run = make_run(error="bad byte \x00 here", suspension_reason="\x00")
    store.save_run(run)
    store.save_step(make_step(run.run_id, 0, component="c\x00", error="e\x00"))
    loaded = store.load_run(run.run_id)
    assert loaded is not None
    assert (loaded.error, loaded.suspension_reason) == ("bad byte \ufffd here", "\ufffd")
    (step,) = store.load_steps(run.run_id)
    assert (step.component, step.error) == ("c\ufffd", "e\ufffd")


@pytest.mark.django_db
def test_nul_in_an_identifier_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="run_id must not contain a NUL character"):
        DjangoRunStore().save_run(make_run(run_id="a\x00b"))
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_json_columns_hold_plain_json_the_database_can_query() -> None:
    store = DjangoRunStore()
    run = make_run(initial_data={"customer": {"tier": "gold"}})
    store.save_run(run)
    assert Run.objects.filter(initial_data__customer__tier="gold").count() == 1


@pytest.mark.django_db
def test_delete_run_is_one_statement(django_assert_num_queries: Any) -> None:
    store = DjangoRunStore()
    run = make_run()
    store.save_run(run)
    for i in range(20):
        store.save_step(make_step(run.run_id, i))
    with django_assert_num_queries(1):
        store.delete_run(run.run_id)
    assert not Step.objects.exists()


@pytest.mark.django_db
def test_each_call_is_one_query(django_assert_num_queries: Any) -> None:
    store = DjangoRunStore()
    run = make_run()
    with django_assert_num_queries(2):  # is it waiting at a gate here? then the upsert
        store.save_run(run)
    with django_assert_num_queries(1):
        store.save_step(make_step(run.run_id, 0))
    with django_assert_num_queries(1):
        store.load_run(run.run_id)
    with django_assert_num_queries(1):
        store.load_steps(run.run_id)
    with django_assert_num_queries(1):
        store.list_runs(status=RunStatus.RUNNING, blueprint="payment")


@pytest.mark.django_db
def test_model_choices_mirror_neurocore_statuses() -> None:
    # Every NeuroCore status, plus "rejected", which NeuroCore reads as failed.
    assert sorted(Run.Status.values) == sorted([*(s.value for s in RunStatus), "rejected"])
    assert {neurocore_status(value) for value in Run.Status.values} == set(RunStatus)
    assert sorted(Step.Status.values) == sorted(s.value for s in StepStatus)


@pytest.mark.django_db
def test_checkpoint_store_round_trips_and_deletes() -> None:
    from flowengine import Checkpoint as FlowCheckpoint
    from neurocore.persistence import checkpoint_store_for

    store = DjangoRunStore()
    checkpoints = checkpoint_store_for(store)
    assert checkpoints is store._checkpoint_store
    checkpoint = FlowCheckpoint(flow_config={"flow": {"x": math.inf}}, context={"data": {"a": 1}})
    assert checkpoints.save(checkpoint) == checkpoint.checkpoint_id
    loaded = checkpoints.load(checkpoint.checkpoint_id)
    assert loaded is not None
    assert loaded.to_json() == checkpoint.to_json()
    checkpoints.delete(checkpoint.checkpoint_id)
    assert checkpoints.load(checkpoint.checkpoint_id) is None
    assert not Checkpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("upsert", "values"),
    [
        (
            "UPSERT_RUN",
            {
                "run_id": "r",
                "blueprint_name": "b",
                "blueprint_version": "1",
                "blueprint_path": None,
                "blueprint_snapshot": {"x": math.nan},
                "flow_type": "graph",
                "status": "failed",
                "initial_data": {"a": [1, "ü"]},
                "final_context": None,
                "error": "boom",
                "suspended_at_node": None,
                "suspension_reason": None,
                "checkpoint_id": "cp",
                "created_at": T0,
                "updated_at": T0 + timedelta(seconds=1),
                "duration_ms": 2.5,
                "awaits_decision": False,
            },
        ),
        (
            "UPSERT_STEP",
            {
                "run_id": "r",
                "step_index": 3,
                "component": "c",
                "skill_type": None,
                "status": "completed",
                "started_at": T0,
                "duration_ms": None,
                "error": None,
                "output_keys": ["k"],
                "context_snapshot": {"data": {}},
            },
        ),
        (
            "UPSERT_CHECKPOINT",
            {
                "checkpoint_id": "cp",
                "flow_config": {"f": 1},
                "context": {"c": "\x00"},
                "created_at": T0,
            },
        ),
    ],
)
def test_prepared_upsert_binds_what_djangos_compiler_binds(upsert: str, values: dict) -> None:
    """The cached statement gets exactly the parameters Django would compile."""
    from django.db import connection

    from runs import store

    prepared = getattr(store, upsert)
    _, compiled_params = prepared.compile([values], "default")
    params = prepared.params(values, connection)
    assert [_plain(p) for p in params] == [_plain(p) for p in compiled_params]
    # Several rows: row after row, or (PostgreSQL) one array per column.
    rows = [values, {**values, prepared.unique_fields[-1].attname: _other_key(values, prepared)}]
    _, compiled_params = prepared.compile(rows, "default")
    by_column = len(compiled_params) == len(prepared.fields)
    assert by_column == (connection.vendor == "postgresql")
    params = prepared.statement_params(rows, connection, by_column=by_column)
    assert _plain(params) == _plain(compiled_params)


def _other_key(values: dict, prepared: Any) -> Any:
    key = values[prepared.unique_fields[-1].attname]
    return key + 1 if isinstance(key, int) else f"{key}-2"


def _plain(param: Any) -> Any:
    """psycopg's Jsonb wrapper compares by identity: compare its dumped text."""
    if isinstance(param, list):
        return [_plain(p) for p in param]
    if hasattr(param, "obj") and hasattr(param, "dumps"):
        return param.dumps(param.obj)
    return param


@pytest.mark.django_db
def test_execute_many_upserts_in_statements_of_many_rows(django_assert_num_queries: Any) -> None:
    from runs.store import UPSERT_RUN, UPSERT_STEP, run_values, step_values

    run = make_run()
    UPSERT_RUN.execute(run_values(run), "default")
    steps = [step_values(make_step(run.run_id, i)) for i in range(1203)]
    with django_assert_num_queries(3):  # 500 + 500 + 203 rows
        UPSERT_STEP.execute_many(steps, "default")
    assert Step.objects.filter(run_id=run.run_id).count() == 1203
    changed = [{**step, "component": "again"} for step in steps]
    UPSERT_STEP.execute_many(changed, "default")
    assert set(Step.objects.values_list("component", flat=True)) == {"again"}


@pytest.mark.django_db(transaction=True)
def test_no_writer_takes_a_run_past_an_undecided_gate(project: Any) -> None:
    """Not even an agent process calling NeuroCore with a forged decision."""
    from neurocore.runtime.executor import resume_blueprint

    from runs.store import GateNotDecided
    from tests.conftest import start_run

    run = start_run()
    store = DjangoRunStore()
    with pytest.raises(GateNotDecided, match="Only a decision recorded in the console"):
        resume_blueprint(
            run.run_id,
            project.registry,
            project.config,
            resume_data={"approved": True, "by": "cfo@example.com"},
            run_store=store,
        )
    store.close()
    waiting = Run.objects.get(pk=run.run_id)
    assert (waiting.status, waiting.suspended_at_node, waiting.updated_at) == (
        "suspended",
        "finance_review",
        run.updated_at,
    )


@pytest.mark.django_db
def test_json_reads_back_in_the_order_it_was_written() -> None:
    """jsonb sorts keys (shorter first): the order travels with the document."""
    invoice = {"vendor": "ACME", "invoice": "INV-7", "amount": 980, "currency": "EUR", "due": "x"}
    store = DjangoRunStore()
    run = make_run(initial_data={"invoice": invoice, "demo": True})
    store.save_run(run)
    loaded = store.load_run(run.run_id)
    assert list(loaded.initial_data) == ["invoice", "demo"]
    assert list(loaded.initial_data["invoice"]) == [
        "vendor",
        "invoice",
        "amount",
        "currency",
        "due",
    ]
    # Still a document the database can query by key.
    assert Run.objects.filter(initial_data__demo=True).count() == 1
