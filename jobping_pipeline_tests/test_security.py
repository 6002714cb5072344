"""Identifier quoting, credentials kept out of logs, a least-privilege role, bad configuration."""

import psycopg
import pytest
from dagster import DagsterInstance

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings, run_cli


def test_a_table_name_with_quotes_and_spaces(database_url, encoder, instance):
    settings = make_settings(
        database_url, JOBPING_JOBS_TABLE='"Odd Schema"."job ""postings"" 2024"', JOBPING_CHUNK_SIZE="10"
    )
    load_demo(settings, 15)
    result = run_backfill(settings, instance, say=lambda line: None)
    assert result.complete and result.jobs_embedded == 15
    with psycopg.connect(database_url) as connection:
        assert connection.execute(
            'SELECT count(*) FROM "Odd Schema"."job ""postings"" 2024" WHERE embedding IS NOT NULL'
        ).fetchone() == (15,)


def test_credentials_stay_out_of_output_and_run_records(database_url, data_dir, dagster_home):
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE ROLE secret_holder LOGIN SUPERUSER PASSWORD 'S3cr3t-pa55'")
    url = database_url.replace("postgresql://postgres:@", "postgresql://secret_holder:S3cr3t-pa55@", 1)
    env = {"JOBPING_DATABASE_URL": url, "JOBPING_CHUNK_SIZE": "10"}
    outputs = [run_cli("jobping-pipeline", "demo-data", "--jobs", "12", env=env)]
    outputs.append(run_cli("jobping-pipeline", "backfill", env=env))
    assert outputs[-1].returncode == 0, outputs[-1].stderr[-2000:]
    outputs.append(run_cli("jobping-pipeline", "backfill", env={**env, "JOBPING_JOBS_TABLE": "missing"}))
    outputs.append(run_cli("jobping-pipeline", "backfill", env={**env, "JOBPING_DATABASE_URL": url.replace("host=", "host=/nonexistent")}))
    assert outputs[-1].returncode == 2 and "***" in outputs[-1].stderr
    for output in outputs:
        assert "S3cr3t-pa55" not in output.stdout + output.stderr
    with DagsterInstance.get() as instance:
        for run in instance.get_runs():
            assert "S3cr3t-pa55" not in str(run.run_config) + str(run.tags)
            for record in instance.all_logs(run.run_id):
                assert "S3cr3t-pa55" not in str(record)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOBPING_DATABASE_URL": "postgresql://u:pw1@no-such-host.invalid:5432/jobs"}, "cannot connect to JOBPING_DATABASE_URL=postgresql://u:***@no-such-host.invalid"),
        ({"JOBPING_JOBS_TABLE": "nowhere"}, "JOBPING_JOBS_TABLE=public.nowhere: no such table"),
        ({"JOBPING_TEXT_COLUMNS": "title,salary"}, "JOBPING_TEXT_COLUMNS names salary"),
        ({"JOBPING_EMBEDDING_COLUMN": "title"}, "JOBPING_EMBEDDING_COLUMN='title' has type text"),
        ({"JOBPING_MODEL": "/no/such/model"}, "JOBPING_MODEL='/no/such/model' could not be loaded offline"),
        ({"JOBPING_CHUNK_SIZE": "0"}, "JOBPING_CHUNK_SIZE='0' must be at least 1"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_setting(database_url, data_dir, env, expected):
    load_demo(make_settings(database_url), 3)
    result = run_cli("jobping-pipeline", "setup", env={"JOBPING_DATABASE_URL": database_url, **env})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "pw1" not in result.stderr


def test_embedding_column_of_another_dimension_is_refused(database_url, data_dir):
    load_demo(make_settings(database_url), 3)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION vector")
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding vector(768)")
    result = run_cli("jobping-pipeline", "setup", env={"JOBPING_DATABASE_URL": database_url})
    assert result.returncode == 2
    assert "makes 384-dimensional vectors but public.jobs.embedding is vector(768)" in result.stderr


def test_vector_indexes_are_deferred_and_rebuilt(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    store = load_demo(settings, 12)
    store.setup(384)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE INDEX jobs_embedding_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)")
        definition = connection.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_embedding_hnsw'").fetchone()
    lines = []
    result = run_backfill(settings, instance, say=lines.append, defer_vector_indexes=True)
    assert result.complete
    assert any("dropped for the backfill" in line for line in lines)
    assert any(line == "vector index jobs_embedding_hnsw rebuilt" for line in lines)
    with psycopg.connect(database_url, autocommit=True) as connection:
        assert connection.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_embedding_hnsw'").fetchone() == definition
    assert JobStore(settings).defer_vector_indexes() == ["jobs_embedding_hnsw"]  # then the process dies
    lines.clear()
    assert run_backfill(settings, instance, say=lines.append).complete
    assert "vector index jobs_embedding_hnsw rebuilt" in lines
    with psycopg.connect(database_url, autocommit=True) as connection:
        assert connection.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_embedding_hnsw'").fetchone() == definition


def test_index_definitions_in_the_state_schema_are_checked_before_they_run(database_url):
    """The meta table can be written by the embedding role; what restore executes from it must
    be a plain vector index on the embedding column, nothing else."""
    store = load_demo(make_settings(database_url), 3)
    store.setup(384)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO jobping_pipeline.meta VALUES ('deferred_index:evil', "
            "'CREATE INDEX evil ON public.jobs USING hnsw (embedding vector_cosine_ops); DROP TABLE jobs')"
        )
    with pytest.raises(ConfigError, match="refusing to execute index definition"):
        store.restore_vector_indexes()
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3,)
