"""The job_state rules of jobping_pipeline/store/state.md, transition by transition, on a real
Postgres with the real triggers: each row starts from a fully embedded table, does one thing to
it, and names the state the job must end in (and whether the table still counts as complete)."""

import psycopg
import pytest

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.checks import evaluate_coverage
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def job_state(store: JobStore, job_id: int) -> str:
    """The state coverage puts one job in, by asking for the counts with only that job eligible."""
    return store.job_states(MODEL_ID, [job_id])[job_id]


@pytest.fixture
def embedded(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_GRACE_MINUTES="5")
    load_demo(settings, 12)
    assert run_backfill(settings, instance, say=lambda line: None).complete
    return settings


def execute(settings, *statements):
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


TRANSITIONS = [
    # (what happens, SQL run as the application, job, state after, complete after)
    ("nothing", [], 3, "fresh", True),
    ("an app edit of a text column", ["UPDATE jobs SET title = 'Night nurse' WHERE id = 3"], 3, "pending", False),
    ("an edit of a column the text does not use", ["UPDATE jobs SET is_active = NOT is_active WHERE id = 3"], 3, "fresh", True),
    ("an updated_at bump", ["UPDATE jobs SET updated_at = now() WHERE id = 3"], 3, "fresh", True),
    ("the vector removed behind the pipeline's back", ["UPDATE jobs SET embedding = NULL WHERE id = 3"], 3, "missing", False),
    ("an app insert", ["INSERT INTO jobs (id, title, company) VALUES (100, 'Welder', 'Werft')"], 100, "pending", False),
    (
        "an insert with triggers bypassed",
        ["SET session_replication_role = replica", "INSERT INTO jobs (id, title, company) VALUES (101, 'Baker', 'Back')"],
        101,
        "missing",
        False,
    ),
    ("a primary key update", ["UPDATE jobs SET id = 102 WHERE id = 4"], 102, "pending", False),
    ("a delete", ["DELETE FROM jobs WHERE id = 5"], 5, None, True),
]


@pytest.mark.parametrize(("event", "statements", "job_id", "state", "complete"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS])
def test_transition(embedded, event, statements, job_id, state, complete):
    store = JobStore(embedded)
    execute(embedded, *statements)
    assert store.job_states(MODEL_ID, [job_id]).get(job_id) == state
    assert store.coverage(MODEL_ID).complete is complete
