"""The vector audit on a real Postgres with the real model: every way a vector can stop being the
model's vector of its row's current text without the state knowing, found, named, queued and
repaired."""

import pytest
from dagster import AssetCheckSeverity

from jobping_pipeline.audit import COSINE_TOLERANCE, audit, detection_probability, sample_for
from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.checks import audit_result
from jobping_pipeline.models import ModelSpec
from jobping_pipeline.store import JobStore

from .helpers import assert_each_holds_the_models_vector_of_its_text, backfilled, execute, run_cli

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def embedded(database_url, encoder, instance):
    return backfilled(database_url, instance, 30, JOBPING_CHUNK_SIZE="10", JOBPING_GRACE_MINUTES="0")


def bypassed(*statements):
    """What pg_restore --disable-triggers and hand repairs by an owner do."""
    return ("ALTER TABLE jobs DISABLE TRIGGER ALL", *statements, "ALTER TABLE jobs ENABLE TRIGGER ALL")


def swap_vectors(a, b):
    return (
        f"UPDATE jobs j SET embedding = o.embedding FROM jobs o "
        f"WHERE (j.id, o.id) IN (({a}, {b}), ({b}, {a}))"
    )


def test_the_issues_22_rows_are_named_failed_and_repaired(embedded, encoder, instance, data_dir, dagster_home):
    """10 descriptions edited under session_replication_role = replica, 10 vectors overwritten by
    another writer in a normal session, 2 rows' vectors swapped with triggers bypassed: on the
    code before the audit, `status` said complete and a backfill embedded nothing."""
    execute(
        embedded,
        "SET session_replication_role = replica",
        "UPDATE jobs SET description = description || ' Night shifts.' WHERE id BETWEEN 1 AND 10",
    )
    execute(embedded, "RESET session_replication_role", "UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 30) WHERE id BETWEEN 11 AND 20")
    execute(embedded, *bypassed(swap_vectors(21, 22)))
    env = {"JOBPING_DATABASE_URL": embedded.database_url, "JOBPING_CHUNK_SIZE": "10", "JOBPING_GRACE_MINUTES": "0"}

    result = run_cli("jobping-pipeline", "audit", "--all", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    named = {int(line.split()[1].rstrip(":")) for line in result.stdout.splitlines() if line.startswith("job ")}
    assert named == set(range(1, 23)), result.stdout + result.stderr
    assert "job 21: vector of job 22 (another row)" in result.stdout
    assert "job 11: vector written outside the pipeline" in result.stdout
    assert run_cli("jobping-pipeline", "status", env=env).returncode == 1

    assert run_backfill(embedded, instance, say=lambda line: None).complete
    assert run_cli("jobping-pipeline", "status", env=env).returncode == 0
    assert audit(JobStore(embedded), ModelSpec(), lambda: encoder, everything=True).passed
    assert_each_holds_the_models_vector_of_its_text(embedded, encoder, range(1, 23))


CHANGES_THE_TRIGGERS_NEVER_SAW = [
    # (what, statements, the job found, the reason the audit gives)
    ("a text edit", bypassed("UPDATE jobs SET title = 'Night nurse' WHERE id = 3"), 3, "text changed behind the triggers"),
    ("a vector of another row", bypassed(swap_vectors(3, 4)), 3, "vector of job 4 (another row)"),
    (
        "a vector from another writer",
        bypassed("UPDATE jobs SET embedding = (SELECT array_agg(0.05)::vector FROM generate_series(1, 384)) WHERE id = 3"),
        3,
        "vector not written by the pipeline (another writer, or a restore)",
    ),
    (
        "a reload of the rows, with other texts, over the state (TRUNCATE and COPY with triggers off)",
        bypassed("UPDATE jobs SET description = 'Reloaded: ' || description WHERE id = 3"),
        3,
        "text changed behind the triggers",
    ),
]


@pytest.mark.parametrize(("event", "statements", "job_id", "reason"), CHANGES_THE_TRIGGERS_NEVER_SAW, ids=[c[0] for c in CHANGES_THE_TRIGGERS_NEVER_SAW])
def test_the_audit_check_fails_naming_the_job_until_it_is_repaired(embedded, encoder, instance, event, statements, job_id, reason):
    store = JobStore(embedded)
    execute(embedded, *statements)
    assert store.coverage(MODEL_ID).complete, "nothing but the audit can see this change"
    report = audit(store, ModelSpec(), lambda: encoder, sample=0)
    check = audit_result(report)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert [problem.describe() for problem in report.problems if problem.job_id == job_id] == [f"{job_id}: {reason}"]
    assert report.queued == len(report.problems)
    coverage = store.state_coverage(MODEL_ID)
    assert not coverage.complete and not coverage.only_pending
    assert f"{job_id}: audit: {reason}" in [problem.describe() for problem in store.problem_jobs(MODEL_ID)]
    assert run_backfill(embedded, instance, say=lambda line: None).complete
    assert audit(store, ModelSpec(), lambda: encoder, sample=0).passed
    assert_each_holds_the_models_vector_of_its_text(embedded, encoder, [job_id])


def test_the_sample_embedded_again_finds_a_vector_that_is_not_the_models(embedded, encoder, instance):
    """A model folder replaced in place, a writer with the pipeline's own digests: only embedding
    again can tell. Here the recorded digest is made to match a foreign vector."""
    store = JobStore(embedded)
    execute(
        embedded,
        *bypassed(
            "UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 9) WHERE id = 8",
            "UPDATE jobping_pipeline.job_state SET vector_hash = (SELECT vector_hash FROM jobping_pipeline.job_state WHERE job_id = 9) WHERE job_id = 8",
        ),
    )
    report = audit(store, ModelSpec(), lambda: encoder, everything=True)
    reasons = {problem.job_id: problem.reason for problem in report.problems}
    assert list(reasons) == [8] and reasons[8].startswith("vector is not the model's vector of its text: cosine")
    assert report.sampled == 30 and report.lowest_cosine < COSINE_TOLERANCE
    assert run_backfill(embedded, instance, say=lambda line: None).complete
    assert_each_holds_the_models_vector_of_its_text(embedded, encoder, [8])


def test_the_promised_detection_probability():
    assert round(detection_probability(0.01, 300), 3) == 0.951
    assert sample_for(0.01, 0.95) == 299
