"""`jobping-pipeline status` exits 0 only when every eligible job is fresh, counted from the jobs
table: never right after setup, never after a switch of embedding column, until a backfill ends."""

import json

import psycopg

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings, run_cli


def status(env: dict) -> tuple[int, dict]:
    result = run_cli("jobping-pipeline", "status", "--json", env=env)
    return result.returncode, json.loads(result.stdout)


def test_status_is_incomplete_after_setup_and_after_a_column_switch_until_the_backfill_ends(
    database_url, encoder, instance, data_dir, dagster_home
):
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "20"}
    load_demo(make_settings(database_url), 30)
    before_setup = run_cli("jobping-pipeline", "status", env=env)
    assert before_setup.returncode == 2 and "run `jobping-pipeline setup`" in before_setup.stderr
    assert "Traceback" not in before_setup.stderr
    JobStore(make_settings(database_url)).setup(384)
    code, report = status(env)
    assert code == 1 and report["complete"] is False
    assert (report["fresh"], report["pending"], report["missing"], report["coverage_percent"]) == (0, 0, 30, 0.0)
    assert run_backfill(make_settings(database_url, JOBPING_CHUNK_SIZE="20"), instance, say=lambda line: None).complete
    code, report = status(env)
    assert code == 0 and report["complete"] is True and report["coverage_percent"] == 100.0

    switched = {**env, "JOBPING_EMBEDDING_COLUMN": "embedding_v2"}
    changes = JobStore(make_settings(database_url, JOBPING_CHUNK_SIZE="20", JOBPING_EMBEDDING_COLUMN="embedding_v2")).setup(384)
    assert "embedding column changed from embedding to embedding_v2: 30 jobs marked for embedding, due at once" in changes
    code, report = status(switched)
    assert code == 1 and (report["fresh"], report["missing"]) == (0, 30)
    assert run_backfill(make_settings(database_url, JOBPING_CHUNK_SIZE="20", JOBPING_EMBEDDING_COLUMN="embedding_v2"), instance, say=lambda line: None).complete
    assert status(switched)[0] == 0

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET embedding_v2 = NULL WHERE id = 7")
    code, report = status(switched)
    assert code == 1 and report["complete"] is False and report["missing"] == 1
    assert report["coverage_percent"] < 100.0, "one missing job is never rounded up to complete"

