"""Changing the model, including to another dimension: prepare-model-change, then a backfill."""

from pathlib import Path

import psycopg
import pytest

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.models import bundled_model_path, load_encoder, spec_from_settings
from jobping_pipeline.model_change import prepare_model_change
from jobping_pipeline.models.fingerprint import folder_fingerprint
from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store import JobStore

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
def test_switching_to_a_model_of_another_dimension(database_url, instance, data_dir, dagster_home, model_128d):
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10"}
    load_demo(make_settings(database_url), 15)
    assert run_backfill(make_settings(database_url, JOBPING_CHUNK_SIZE="10"), instance, say=lambda line: None).complete
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE INDEX jobs_embedding_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)")

    new_env = {**env, "JOBPING_MODEL": model_128d}
    new_settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_MODEL=model_128d)
    with pytest.raises(ConfigError, match="makes 128-dimensional vectors but public.jobs.embedding is vector\\(384\\)"):
        run_backfill(new_settings, instance, say=lambda line: None)
    store = JobStore(new_settings)
    asked = prepare_model_change(store, load_encoder(spec_from_settings(new_settings)), confirmed=False)
    assert not asked.done and "Run again with --yes" in asked.lines[-1]
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
        ).fetchall() == [(f"{model_128d}#{folder_fingerprint(Path(model_128d))}",)]
    status = run_cli("jobping-pipeline", "status", "--json", env={**new_env, "JOBPING_GRACE_MINUTES": "0"})
    assert status.returncode == 0 and '"fresh": 15' in status.stdout


def test_a_same_dimension_change_marks_every_job_stale(database_url, instance, data_dir, dagster_home):
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10"}
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    load_demo(settings, 12)
    assert run_backfill(settings, instance, say=lambda line: None).complete
    shorter = {**env, "JOBPING_MAX_SEQ_LENGTH": "128"}
    prepared = run_cli("jobping-pipeline", "prepare-model-change", env=shorter)
    assert prepared.returncode == 0 and "nothing to prepare. 12 jobs are not embedded by it yet" in prepared.stdout
    backfill = run_cli("jobping-pipeline", "backfill", env=shorter)
    assert backfill.returncode == 0 and "12 jobs to embed" in backfill.stdout
