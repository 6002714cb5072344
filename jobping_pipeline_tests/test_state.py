"""The job_state rules of jobping_pipeline/store/state.md, transition by transition, on a real
Postgres with the real triggers: each row starts from a fully embedded table, does one thing to
it, and names the state the job must end in (and whether the table still counts as complete)."""

import psycopg
import pytest
from dagster import AssetCheckSeverity
from pgvector.psycopg import register_vector

from jobping_pipeline.checks import evaluate_coverage, evaluate_deep_coverage
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.store import JobStore
from jobping_pipeline.texts import build_text

from .helpers import assert_each_holds_the_models_vector_of_its_text, backfilled, execute, load_demo, make_settings, requested, run_chunks, run_cli, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def embedded(database_url, encoder, instance):
    return backfilled(database_url, instance, 12, JOBPING_CHUNK_SIZE="10", JOBPING_GRACE_MINUTES="5")


TRANSITIONS = [
    # (what happens, SQL run as the application, job, state after, complete after). The fast
    # count from the state alone agrees, except for the one change no trigger sees.
    ("nothing", [], 3, "fresh", True),
    ("an app edit of a text column", ["UPDATE jobs SET title = 'Night nurse' WHERE id = 3"], 3, "pending", False),
    ("an edit of a column the text does not use", ["UPDATE jobs SET is_active = NOT is_active WHERE id = 3"], 3, "fresh", True),
    ("an updated_at bump", ["UPDATE jobs SET updated_at = now() WHERE id = 3"], 3, "fresh", True),
    ("the vector removed behind the pipeline's back", ["UPDATE jobs SET embedding = NULL WHERE id = 3"], 3, "missing", False),
    ("an app insert", ["INSERT INTO jobs (id, title, company) VALUES (100, 'Welder', 'Werft')"], 100, "pending", False),
    (
        "an insert with triggers bypassed",
        [
            "ALTER TABLE jobs DISABLE TRIGGER ALL",
            "INSERT INTO jobs (id, title, company) VALUES (101, 'Baker', 'Back')",
            "ALTER TABLE jobs ENABLE TRIGGER ALL",
        ],
        101,
        "missing",
        False,
    ),
    # session_replication_role = replica (bulk fixes, pg_restore --disable-triggers, logical
    # replication) no longer hides a change: the capture triggers are enabled ALWAYS.
    (
        "an insert under session_replication_role = replica",
        ["SET session_replication_role = replica", "INSERT INTO jobs (id, title, company) VALUES (101, 'Baker', 'Back')"],
        101,
        "pending",
        False,
    ),
    (
        "a text edit under session_replication_role = replica",
        ["SET session_replication_role = replica", "UPDATE jobs SET title = 'Night nurse' WHERE id = 3"],
        3,
        "pending",
        False,
    ),
    (
        "a vector written by another writer",
        ["UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 4) WHERE id = 3"],
        3,
        "stale",
        False,
    ),
    (
        "a vector written by another writer under session_replication_role = replica",
        ["SET session_replication_role = replica", "UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 4) WHERE id = 3"],
        3,
        "stale",
        False,
    ),
    ("a TRUNCATE", ["TRUNCATE jobs"], 3, None, True),
    ("a primary key update", ["UPDATE jobs SET id = 102 WHERE id = 4"], 102, "pending", False),
    ("a delete", ["DELETE FROM jobs WHERE id = 5"], 5, None, True),
]


@pytest.mark.parametrize(("event", "statements", "job_id", "state", "complete"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_transition(embedded, event, statements, job_id, state, complete):
    store = JobStore(embedded)
    execute(embedded, *statements)
    assert store.job_states(MODEL_ID, [job_id]).get(job_id) == state
    deep, fast = store.coverage(MODEL_ID), store.state_coverage(MODEL_ID)
    assert deep.complete is complete
    if "bypassed" in event:
        assert fast.complete and fast.eligible == deep.eligible - 1, "the hourly deep check finds these"
    else:
        assert fast == deep


def test_a_job_deleted_and_inserted_again_mid_run_is_not_fresh_with_the_old_text(embedded, encoder, monkeypatch):
    store = JobStore(embedded)
    execute(embedded, "UPDATE jobs SET description = 'First text' WHERE id IN (5, 6)")
    real_encode = type(encoder).encode
    swapped = []

    def encode_while_the_app_replaces_job_5(self, texts, batch_size):
        if not swapped:
            swapped.append(True)
            execute(
                embedded,
                "DELETE FROM jobs WHERE id = 5",
                "INSERT INTO jobs (id, title, company, description) VALUES (5, 'Tram driver', 'Stadtwerke', 'Second text')",
            )
        return real_encode(self, texts, batch_size)

    monkeypatch.setattr(type(encoder), "encode", encode_while_the_app_replaces_job_5)
    embed_chunk(store, encoder, "000001", batch_size=8)
    assert store.job_states(MODEL_ID, [5, 6]) == {5: "pending", 6: "fresh"}
    monkeypatch.setattr(type(encoder), "encode", real_encode)
    store.register_chunks(scan_table=False)  # the new row of job 5 gets a chunk, as on a sensor tick
    again = [embed_chunk(store, encoder, chunk.chunk_key, batch_size=8) for chunk in store.dirty_chunks()]
    assert sum(report.embedded for report in again) == 1 and store.job_states(MODEL_ID, [5]) == {5: "fresh"}
    with psycopg.connect(embedded.database_url) as connection:
        register_vector(connection)
        row = connection.execute("SELECT title, company, location, categories, description, embedding FROM jobs WHERE id = 5").fetchone()
    assert float(row[5].to_numpy() @ encoder.encode([build_text(row[:5])], 1)[0]) > 0.9999


def test_a_json_text_column_never_breaks_the_applications_writes(database_url, encoder):
    load_demo(make_settings(database_url), 0)
    settings = make_settings(database_url, JOBPING_TEXT_COLUMNS="title,details", JOBPING_CHUNK_SIZE="10")
    execute(settings, "ALTER TABLE jobs ADD COLUMN details json", "INSERT INTO jobs (title, company, details) VALUES ('Cook', 'Inn', '{\"shift\": \"early\"}')")
    store = JobStore(settings)
    store.setup(384)
    store.register_chunks(scan_table=False)
    embed_chunk(store, encoder, "000001", batch_size=8)
    assert store.job_states(MODEL_ID, [1]) == {1: "fresh"}
    execute(settings, "UPDATE jobs SET company = 'Other inn'")
    assert store.job_states(MODEL_ID, [1]) == {1: "fresh"}
    execute(settings, "UPDATE jobs SET details = '{\"shift\":  \"late\"}'")
    assert store.job_states(MODEL_ID, [1]) == {1: "pending"}


def test_jobs_inserted_with_triggers_bypassed_fail_the_check_until_the_sensor_embeds_them(embedded, instance):
    store = JobStore(embedded)
    execute(
        embedded,
        "ALTER TABLE jobs DISABLE TRIGGER ALL",
        "INSERT INTO jobs (id, title, company) VALUES (200, 'Baker', 'Back'), (201, 'Miller', 'Muehle')",
        "ALTER TABLE jobs ENABLE TRIGGER ALL",
    )
    check = evaluate_deep_coverage(store, MODEL_ID)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert (check.metadata["without_state"].value, check.metadata["queued_jobs_without_state"].value) == (2, 2)
    result = tick(embedded, instance)
    assert requested(result) == ["000002"]
    run_chunks(embedded, instance, result)
    assert evaluate_deep_coverage(store, MODEL_ID).passed


def test_a_tick_puts_back_triggers_that_were_disabled_and_queues_what_they_missed(embedded, instance):
    """``ENABLE TRIGGER ALL`` (what pg_restore --disable-triggers ends with) leaves the capture
    triggers enabled for origin sessions only: the next tick installs them ALWAYS again."""
    store = JobStore(embedded)
    execute(
        embedded,
        "ALTER TABLE jobs DISABLE TRIGGER ALL",
        "INSERT INTO jobs (id, title, company) VALUES (200, 'Baker', 'Back')",
        "ALTER TABLE jobs ENABLE TRIGGER ALL",
    )
    assert store.setup_outdated(384) == ["change-capture triggers missing or not enabled ALWAYS"]
    result = tick(embedded, instance)
    assert requested(result) == ["000002"] and store.setup_outdated(384) == []
    run_chunks(embedded, instance, result)
    execute(embedded, "SET session_replication_role = replica", "UPDATE jobs SET title = 'Pastry chef' WHERE id = 200")
    assert store.job_states(MODEL_ID, [200]) == {200: "pending"}


def test_a_truncate_forgets_every_job(embedded):
    store = JobStore(embedded)
    execute(embedded, "TRUNCATE jobs", "INSERT INTO jobs (id, title, company) VALUES (1, 'Baker', 'Back')")
    fast, deep = store.state_coverage(MODEL_ID), store.coverage(MODEL_ID)
    assert (fast.eligible, fast.fresh) == (deep.eligible, deep.fresh) == (1, 0)


def test_changes_the_triggers_used_to_miss_fail_the_checks_by_name_until_the_sensor_repairs_them(embedded, encoder, instance):
    """The changes that reached no trigger before the capture triggers were ALWAYS and watched the
    vector: ``status`` and both coverage checks fail naming each job, the sensor's runs repair all."""
    store = JobStore(embedded)
    execute(
        embedded,
        "SET session_replication_role = replica",
        "UPDATE jobs SET title = 'Night nurse' WHERE id = 3",
        "INSERT INTO jobs (id, title, company) VALUES (101, 'Baker', 'Back')",
        "UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 9) WHERE id = 5",
        "RESET session_replication_role",
        "UPDATE jobs SET embedding = (SELECT embedding FROM jobs WHERE id = 9) WHERE id = 4",
        "UPDATE jobping_pipeline.job_state SET changed_at = now() - interval '1 hour'",  # the grace period, compressed
    )
    env = {"JOBPING_DATABASE_URL": embedded.database_url, "JOBPING_CHUNK_SIZE": "10"}
    status = run_cli("jobping-pipeline", "status", env=env)
    assert status.returncode == 1, status.stdout + status.stderr
    for check in (evaluate_coverage(store, MODEL_ID), evaluate_deep_coverage(store, MODEL_ID)):
        assert not check.passed and check.severity == AssetCheckSeverity.ERROR
        named = check.metadata["problem_jobs"].value
        for job_id in (3, 4, 5, 101):
            assert f"{job_id}" in named, named
    assert "4: vector written outside the pipeline" in named

    run_chunks(embedded, instance, tick(embedded, instance))
    assert run_cli("jobping-pipeline", "status", env=env).returncode == 0
    assert evaluate_deep_coverage(store, MODEL_ID).passed
    assert_each_holds_the_models_vector_of_its_text(embedded, encoder, [3, 4, 5, 101])


def test_a_truncate_and_a_reload_with_triggers_off_are_embedded_again(embedded, encoder, instance):
    """A reload after TRUNCATE lands on no old state row: with the triggers off, the reloaded rows
    have no state, the deep check fails counting them, and the sensor embeds them."""
    store = JobStore(embedded)
    execute(
        embedded,
        "CREATE TABLE saved AS SELECT * FROM jobs",
        "TRUNCATE jobs",
        "ALTER TABLE jobs DISABLE TRIGGER ALL",
        "INSERT INTO jobs SELECT * FROM saved",
        "UPDATE jobs SET description = 'Reloaded: ' || coalesce(description, '')",
        "ALTER TABLE jobs ENABLE TRIGGER ALL",
    )
    check = evaluate_deep_coverage(store, MODEL_ID)
    assert not check.passed and check.metadata["without_state"].value == 12
    run_chunks(embedded, instance, tick(embedded, instance))
    assert evaluate_deep_coverage(store, MODEL_ID).passed
    assert_each_holds_the_models_vector_of_its_text(embedded, encoder, range(1, 13))
