"""Changing the model, including to another dimension: prepare-model-change, then a backfill."""

import psycopg
import pytest

from jobping_pipeline.encoder import bundled_model_path

from .helpers import load_demo, make_settings, run_cli


@pytest.fixture(scope="module")
def model_128d(tmp_path_factory):
    """A local 128-dimensional model: the bundled one plus a dense projection (loaded by path,
    offline, like any JOBPING_MODEL folder)."""
    from sentence_transformers import SentenceTransformer, models

    base = SentenceTransformer(str(bundled_model_path()), device="cpu", local_files_only=True)
    projection = models.Dense(in_features=384, out_features=128)
    path = tmp_path_factory.mktemp("model-128d")
    SentenceTransformer(modules=[*base, projection], device="cpu").save(str(path))
    return str(path)


@pytest.mark.slow
def test_switching_to_a_model_of_another_dimension(database_url, data_dir, dagster_home, model_128d):
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10"}
    load_demo(make_settings(database_url), 15)
    assert run_cli("jobping-pipeline", "backfill", env=env).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE INDEX jobs_embedding_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)")

    new_env = {**env, "JOBPING_MODEL": model_128d}
    refused = run_cli("jobping-pipeline", "backfill", env=new_env)
    assert refused.returncode == 2 and "makes 128-dimensional vectors but public.jobs.embedding is vector(384)" in refused.stderr
    asked = run_cli("jobping-pipeline", "prepare-model-change", env=new_env)
    assert asked.returncode == 1 and "Run again with --yes" in asked.stdout
    prepared = run_cli("jobping-pipeline", "prepare-model-change", "--yes", env=new_env)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert "is now vector(128)" in prepared.stdout
    assert "vector indexes jobs_embedding_hnsw rebuilt on the new column" in prepared.stdout
    with psycopg.connect(database_url) as connection:
        # Before any backfill: the index is back (whatever embeds next, the sensor, the UI or
        # the CLI, leaves the table indexed) and every job is due for the sensor.
        assert connection.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'jobs_embedding_hnsw'").fetchone() == (1,)
        assert connection.execute("SELECT count(*) FROM jobping_pipeline.job_state WHERE dirty").fetchone() == (15,)
    backfill = run_cli("jobping-pipeline", "backfill", env=new_env)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr[-2000:]
    assert backfill.stdout.strip().splitlines()[-1].startswith("coverage 100.00%: 15 of 15")
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT DISTINCT vector_dims(embedding) FROM jobs").fetchall() == [(128,)]
        assert connection.execute(
            "SELECT DISTINCT model_id FROM jobping_pipeline.job_state"
        ).fetchall() == [(model_128d,)]
    status = run_cli("jobping-pipeline", "status", "--json", env={**new_env, "JOBPING_GRACE_MINUTES": "0"})
    assert status.returncode == 0 and '"fresh": 15' in status.stdout


def test_a_same_dimension_change_marks_every_job_stale(database_url, data_dir, dagster_home):
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10"}
    load_demo(make_settings(database_url), 12)
    assert run_cli("jobping-pipeline", "backfill", env=env).returncode == 0
    shorter = {**env, "JOBPING_MAX_SEQ_LENGTH": "128"}
    prepared = run_cli("jobping-pipeline", "prepare-model-change", env=shorter)
    assert prepared.returncode == 0 and "nothing to prepare. 12 jobs are not embedded by it yet" in prepared.stdout
    backfill = run_cli("jobping-pipeline", "backfill", env=shorter)
    assert backfill.returncode == 0 and "12 jobs to embed" in backfill.stdout
