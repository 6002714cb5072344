"""Operator commands: status, search, the SQL search function, and the HNSW index option."""

import json

import psycopg
import pytest
from dagster import DagsterInstance

from jobping_pipeline.backfill import run_backfill

from .helpers import load_demo, make_settings, run_cli


@pytest.fixture
def embedded(database_url, encoder):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="20")
    load_demo(settings, 30)
    with DagsterInstance.ephemeral() as instance:
        assert run_backfill(settings, instance, say=lambda line: None).complete
    return settings


def test_status_reports_numbers_and_exits_by_coverage(embedded, data_dir, dagster_home):
    env = {"JOBPING_DATABASE_URL": embedded.database_url, "JOBPING_CHUNK_SIZE": "20", "JOBPING_GRACE_MINUTES": "0"}
    complete = run_cli("jobping-pipeline", "status", "--json", env=env)
    assert complete.returncode == 0, complete.stderr[-2000:]
    report = json.loads(complete.stdout)
    assert (report["coverage_percent"], report["eligible"], report["fresh"], report["chunks_done"]) == (100.0, 30, 30, 2)
    with psycopg.connect(embedded.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET description = 'changed' WHERE id IN (1, 2, 3)")
        connection.execute("UPDATE jobping_pipeline.job_state SET last_error = 'boom', attempts = 3 WHERE job_id = 3")
    incomplete = run_cli("jobping-pipeline", "status", env=env)
    assert incomplete.returncode == 1
    text = incomplete.stdout
    assert "coverage" in text and "90.00%" in text and "chunks done" in text and "1 of 2" in text
    assert "000001" in text and "jobs to do" in text
    report = json.loads(run_cli("jobping-pipeline", "status", "--json", env=env).stdout)
    assert (report["stale"], report["failed"], report["jobs_to_do"], report["complete"]) == (3, 1, 3, False)


def test_search_finds_a_job_by_its_own_words(embedded, data_dir):
    env = {"JOBPING_DATABASE_URL": embedded.database_url}
    with psycopg.connect(embedded.database_url) as connection:
        title, location = connection.execute("SELECT title, location FROM jobs WHERE id = 17").fetchone()
    result = run_cli("jobping-pipeline", "search", f"{title} in {location}", "--limit", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and hits[0]["id"] == "17" and hits[0]["title"] == title
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    table = run_cli("jobping-pipeline", "search", "nurse", "--limit", "2", env=env)
    assert table.returncode == 0 and "score" in table.stdout.splitlines()[0]


def test_sql_search_function_and_hnsw_index(embedded, data_dir):
    env = {"JOBPING_DATABASE_URL": embedded.database_url}
    result = run_cli("jobping-pipeline", "setup", "--index", "hnsw", env=env)
    assert result.returncode == 0 and "built HNSW index jobs_embedding_hnsw" in result.stdout
    with psycopg.connect(embedded.database_url) as connection:
        rows = connection.execute(
            "SELECT * FROM jobping_pipeline.match_jobs_by_embedding("
            "(SELECT embedding FROM jobs WHERE id = 9), 0.2, 5)"
        ).fetchall()
        assert rows[0][0] == 9 and abs(rows[0][1] - 1.0) < 1e-4 and len(rows) <= 5
        assert all(similarity >= 0.2 for _, similarity in rows)
        # The app calls the function with a vector parameter: then Postgres inlines it, and with
        # sequential scans ruled out the plan must reach the HNSW index (not a sort of every row).
        query = connection.execute("SELECT embedding FROM jobs WHERE id = 9").fetchone()[0]
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                "EXPLAIN SELECT * FROM jobping_pipeline.match_jobs_by_embedding(%s::vector, 0.2, 5)", (query,)
            )
        )
    assert "Index Scan using jobs_embedding_hnsw" in plan, plan[:2000]
