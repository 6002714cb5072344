"""Asset checks on a real table: they pass only at full, fresh coverage and say what is missing."""

import psycopg
import pytest
from dagster import AssetCheckSeverity, DagsterEventType

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.checks import evaluate_coverage, evaluate_deep_coverage, evaluate_vector_sanity
from jobping_pipeline.store import JobStore
from jobping_pipeline.definitions import CHECKS_JOB, DEEP_CHECKS_JOB, build_definitions

from .helpers import backfilled as fully_embedded
from .helpers import load_demo, make_settings, requested, run_chunks, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def backfilled(database_url, encoder, instance):
    return fully_embedded(database_url, instance, 30, JOBPING_CHUNK_SIZE="20", JOBPING_GRACE_MINUTES="0")


def check_evaluations(settings, instance, job_name=CHECKS_JOB):
    result = build_definitions(settings).resolve_job_def(job_name).execute_in_process(instance=instance)
    assert result.success
    return {
        event.asset_check_evaluation_data.check_name: event.asset_check_evaluation_data
        for event in result.all_events
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    }


def test_checks_pass_at_full_coverage(backfilled, instance):
    evaluations = check_evaluations(backfilled, instance)
    assert set(evaluations) == {"coverage"}
    deep = check_evaluations(backfilled, instance, DEEP_CHECKS_JOB)
    assert set(deep) == {"deep_coverage", "vector_sanity", "vector_audit"}
    for coverage in (evaluations["coverage"], deep["deep_coverage"]):
        assert coverage.passed
        assert coverage.metadata["coverage_percent"].value == 100.0
        assert coverage.metadata["eligible"].value == coverage.metadata["fresh"].value == 30
    assert deep["vector_sanity"].passed
    assert deep["vector_audit"].passed and deep["vector_audit"].metadata["audited"].value == 30


def test_the_fast_check_sees_removed_vectors_and_eligibility_through_the_triggers(database_url, encoder, instance):
    settings = fully_embedded(database_url, instance, 20, JOBPING_ELIGIBLE_COLUMN="is_active")
    store = JobStore(settings)
    with psycopg.connect(database_url, autocommit=True) as connection:
        active = connection.execute("SELECT count(*) FROM jobs WHERE is_active").fetchone()[0]
        inactive_id = connection.execute("SELECT min(id) FROM jobs WHERE NOT is_active").fetchone()[0]
        assert evaluate_coverage(store, MODEL_ID).metadata["eligible"].value == active
        connection.execute("UPDATE jobs SET embedding = NULL WHERE id = %s", (inactive_id,))
        assert evaluate_coverage(store, MODEL_ID).passed, "an ineligible job does not count"
        connection.execute("UPDATE jobs SET is_active = true WHERE id = %s", (inactive_id,))
    result = evaluate_coverage(store, MODEL_ID)
    assert not result.passed and result.severity == AssetCheckSeverity.ERROR
    assert (result.metadata["eligible"].value, result.metadata["missing"].value) == (active + 1, 1)
    assert f"- {inactive_id}: no vector" in result.metadata["problem_jobs"].value
    assert evaluate_deep_coverage(store, MODEL_ID).metadata["missing"].value == 1
    run_chunks(settings, instance, tick(settings, instance))
    assert evaluate_coverage(store, MODEL_ID).passed and evaluate_deep_coverage(store, MODEL_ID).passed


def test_coverage_fails_with_ids_and_passes_after_the_next_run(backfilled, instance):
    with psycopg.connect(backfilled.database_url, autocommit=True) as connection:
        new_id = connection.execute(
            "INSERT INTO jobs (title, company) VALUES ('Forklift driver', 'Hafen Logistik') RETURNING id"
        ).fetchone()[0]
        # Behind the triggers' back: only the deep check can see it.
        connection.execute("ALTER TABLE jobs DISABLE TRIGGER ALL")
        connection.execute("UPDATE jobs SET embedding = NULL WHERE id = 7")
        connection.execute("ALTER TABLE jobs ENABLE TRIGGER ALL")
    store = JobStore(backfilled)
    assert evaluate_coverage(store, MODEL_ID).metadata["missing"].value == 1, "only the app's insert"
    result = evaluate_deep_coverage(store, MODEL_ID)
    assert not result.passed and result.severity == AssetCheckSeverity.ERROR
    assert (result.metadata["missing"].value, result.metadata["fresh"].value) == (2, 29)
    problems = result.metadata["problem_jobs"].value
    assert f"- {new_id}: no vector" in problems and "- 7: no vector" in problems
    assert result.metadata["requeued_lost_vectors"].value == 1
    assert [chunk.chunk_key for chunk in store.dirty_chunks()] == ["000001"]
    result = tick(backfilled, instance)
    assert requested(result) == ["000001", "000002"] and len(result.run_requests) == 1
    run_chunks(backfilled, instance, result)
    assert evaluate_deep_coverage(store, MODEL_ID).passed


def test_jobs_queued_by_setup_are_due_at_once_and_app_inserts_only_warn(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="20", JOBPING_ELIGIBLE_COLUMN="is_active")
    load_demo(settings, 20)
    store = JobStore(settings)
    store.setup(384)
    store.register_chunks(scan_table=True)
    with psycopg.connect(database_url, autocommit=True) as connection:
        active = connection.execute("SELECT count(*) FROM jobs WHERE is_active").fetchone()[0]
    queued = evaluate_deep_coverage(store, MODEL_ID)
    assert not queued.passed and queued.severity == AssetCheckSeverity.ERROR
    assert (queued.metadata["pending"].value, queued.metadata["missing"].value) == (0, active)
    assert queued.metadata["coverage_percent"].value == 0.0
    assert run_backfill(settings, instance, say=lambda line: None).complete
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("INSERT INTO jobs (title, company) VALUES ('Roofer', 'Dach GmbH')")
    young = evaluate_deep_coverage(store, MODEL_ID)
    assert not young.passed and young.severity == AssetCheckSeverity.WARN
    assert (young.metadata["pending"].value, young.metadata["fresh"].value) == (1, active)
    assert young.metadata["coverage_percent"].value < 100
    no_grace = make_settings(database_url, JOBPING_ELIGIBLE_COLUMN="is_active", JOBPING_GRACE_MINUTES="0")
    late = evaluate_deep_coverage(JobStore(no_grace), MODEL_ID)
    assert not late.passed and late.severity == AssetCheckSeverity.ERROR and late.metadata["missing"].value == 1
    assert 0 < active < 20


def test_a_model_change_makes_every_job_stale(backfilled):
    result = evaluate_deep_coverage(JobStore(backfilled), "some-other/model")
    assert not result.passed
    assert (result.metadata["stale"].value, result.metadata["fresh"].value) == (30, 0)


def test_vector_sanity_catches_vectors_that_are_not_unit_length_and_dimension_drift(backfilled):
    store = JobStore(backfilled)
    with psycopg.connect(backfilled.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET embedding = array_fill(1.0, ARRAY[384])::vector WHERE id = 12")
    result = evaluate_vector_sanity(store, 384)
    assert not result.passed
    assert result.metadata["not_unit_length"].value == 1 and result.metadata["not_unit_length_ids"].value == "12"
    with psycopg.connect(backfilled.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET embedding = NULL WHERE id = 12")
    assert evaluate_vector_sanity(store, 384).passed
    assert not evaluate_vector_sanity(store, 768).passed


def test_a_changed_eligible_column_never_lets_the_fast_check_pass_early(database_url, encoder, instance):
    settings = fully_embedded(database_url, instance, 20, JOBPING_ELIGIBLE_COLUMN="is_active")
    with psycopg.connect(database_url, autocommit=True) as connection:
        inactive_id = connection.execute("SELECT min(id) FROM jobs WHERE NOT is_active").fetchone()[0]
        connection.execute("SET session_replication_role = replica")  # no trigger: the state stays fresh
        connection.execute("UPDATE jobs SET embedding = NULL WHERE id = %s", (inactive_id,))
    assert evaluate_coverage(JobStore(settings), MODEL_ID).passed, "ineligible: it does not count"
    every_job = make_settings(database_url)  # JOBPING_ELIGIBLE_COLUMN unset: every job counts
    store = JobStore(every_job)
    assert store.state_coverage(MODEL_ID) == store.coverage(MODEL_ID), "counted from the table until setup"
    assert not evaluate_deep_coverage(store, MODEL_ID).passed
    tick(every_job, instance)  # the sensor's setup mirrors eligibility: every job is eligible again
    assert store.meta()["eligible_column"] == ""
    with psycopg.connect(database_url) as connection:
        mirrored = connection.execute(
            "SELECT eligible FROM jobping_pipeline.job_state WHERE job_id = %s", (inactive_id,)
        ).fetchone()[0]
    assert mirrored is True
    result = evaluate_coverage(store, MODEL_ID)
    assert not result.passed and result.metadata["missing"].value == 1
