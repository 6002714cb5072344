"""Full backfills through real Dagster runs, on a real Postgres, with the real model."""

import psycopg
import pytest
from pgvector.psycopg import register_vector
from dagster import AssetCheckSeverity, AssetKey, DagsterEventType, DagsterRunStatus, RunsFilter

from jobping_pipeline.backfill import register, run_backfill
from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.resources import build_resources, resolved
from jobping_pipeline.store import JobStore
from jobping_pipeline.texts import build_text
from jobping_pipeline.models import loaded_model_count
from jobping_pipeline.partitions import JOB_CHUNKS, RANGE_END_TAG, RANGE_START_TAG

from .helpers import around_model_calls, load_demo, make_settings, refuse_poison

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EVERY_OTHER_COLUMN = "SELECT id, (to_jsonb(j) - 'embedding')::text FROM jobs j ORDER BY id"


@pytest.mark.parametrize("id_type", ["integer", "uuid"])
def test_full_backfill_reaches_full_coverage_and_touches_nothing_else(database_url, encoder, instance, id_type):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="80")
    load_demo(settings, 200, id_type=id_type)
    with psycopg.connect(database_url) as connection:
        before = connection.execute(EVERY_OTHER_COLUMN).fetchall()
    models_before = loaded_model_count()
    lines = []

    result = run_backfill(settings, instance, say=lines.append)

    assert result.complete, lines
    assert (result.chunks_run, result.jobs_embedded) == (3, 200)
    assert (result.coverage.eligible, result.coverage.fresh, result.coverage.percent) == (200, 200, 100.0)
    assert loaded_model_count() == models_before, "the model must be loaded once per process"
    assert sorted(instance.get_dynamic_partitions(JOB_CHUNKS)) == ["000001", "000002", "000003"]
    runs = instance.get_runs(RunsFilter(job_name=EMBED_JOB))
    assert len(runs) == 1 and runs[0].status == DagsterRunStatus.SUCCESS, "3 chunks are one run, as in a UI backfill"
    assert (runs[0].tags[RANGE_START_TAG], runs[0].tags[RANGE_END_TAG]) == ("000001", "000003")
    assert instance.get_materialized_partitions(AssetKey("job_embeddings")) == {"000001", "000002", "000003"}
    assert [line.split(":")[0] for line in lines if line.startswith("[")] == [
        "[1/3] chunk 000001", "[2/3] chunk 000002", "[3/3] chunk 000003"
    ], "a progress line per chunk as it finishes"
    assert all("80 embedded" in line or "40 embedded" in line for line in lines if line.startswith("["))
    assert lines[-1].startswith("coverage 100.00%")
    with psycopg.connect(database_url) as connection:
        assert connection.execute(EVERY_OTHER_COLUMN).fetchall() == before
        assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NULL").fetchone() == (0,)

    calls = encoder.calls
    again = run_backfill(settings, instance, say=lines.append)
    assert (again.chunks_run, again.jobs_embedded, encoder.calls) == (0, 0, calls)
    assert again.complete


def test_more_than_ten_chunks_take_a_run_per_ten(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="4")
    load_demo(settings, 44)  # 11 chunks

    result = run_backfill(settings, instance, say=lambda line: None)

    assert result.complete and (result.chunks_run, result.jobs_embedded) == (11, 44)
    runs = sorted(instance.get_runs(RunsFilter(job_name=EMBED_JOB)), key=lambda run: run.tags.get(RANGE_START_TAG, run.tags.get("dagster/partition")))
    assert [run.tags.get(RANGE_START_TAG, run.tags.get("dagster/partition")) for run in runs] == ["000001", "000011"]
    assert runs[0].tags[RANGE_END_TAG] == "000010" and RANGE_START_TAG not in runs[1].tags
    assert len(result.run_ids) == 2


def test_another_text_template_makes_every_vector_stale_until_its_texts_are_embedded(database_url, instance):
    lines = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    load_demo(lines, 12)
    assert run_backfill(lines, instance, say=lambda line: None).complete
    sentences = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_TEXT_TEMPLATE="sentences")
    model = resolved(build_resources(sentences)["embedding_model"])
    assert model.spec().model_id == MODEL_ID + "+text=sentences"

    before = JobStore(sentences).state_coverage(model.spec().model_id)
    assert (before.fresh, before.stale, before.complete) == (0, 12, False), "vectors of the old texts never count"
    result = run_backfill(sentences, instance, say=lambda line: None)

    assert result.complete and result.jobs_embedded == 12
    with psycopg.connect(database_url) as connection:
        register_vector(connection)
        row = connection.execute(
            "SELECT title, company, location, categories, description, embedding FROM jobs WHERE id = 3"
        ).fetchone()
    text = build_text(row[:5], "sentences", ("title", "company", "location", "categories", "description"))
    assert text.count(". ") >= 3 and "\n" not in text.split(". ")[0]
    assert float(row[5].to_numpy() @ model.encoder().encode([text], 1)[0]) > 0.9999


def test_a_failing_batch_fails_the_chunk_checks_with_the_error_visible(settings, encoder, instance, monkeypatch):
    load_demo(settings, 50)

    def broken(texts):
        raise RuntimeError("injected failure inside a batch")

    around_model_calls(monkeypatch, encoder, broken)
    result = run_backfill(settings, instance, say=lambda line: None)

    assert not result.complete
    assert set(result.failed_chunks) == {"000001", "000002"}
    assert all("injected failure inside a batch" in message for message in result.failed_chunks.values())
    assert (result.coverage.fresh, result.coverage.failed, result.coverage.pending) == (0, 50, 0)
    assert result.coverage.percent == 0.0
    with psycopg.connect(settings.database_url) as connection:
        assert connection.execute(
            "SELECT count(*) FROM jobping_pipeline.job_state WHERE embedded_version IS NOT NULL"
        ).fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NOT NULL").fetchone() == (0,)


def test_one_bad_job_in_a_multi_chunk_run_materializes_the_rest_and_fails_the_check(settings, encoder, instance, monkeypatch):
    load_demo(settings, 100)  # chunks of 40: 000001 to 000003
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET description = 'POISON pill' WHERE id = 57")
    register(JobStore(settings), instance, encoder)
    refuse_poison(monkeypatch, encoder)
    run = build_definitions(settings).resolve_job_def(EMBED_JOB).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "000001", "dagster/asset_partition_range_end": "000003"},
    )
    assert run.success
    materialized = {event.partition for event in run.get_asset_materialization_events()}
    assert materialized == {"000001", "000002", "000003"}
    checks = [
        event.asset_check_evaluation_data
        for event in run.all_events
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert len(checks) == 1 and not checks[0].passed and checks[0].severity == AssetCheckSeverity.ERROR
    assert "- 57: failed 1x: encode failed: RuntimeError: injected model failure" in checks[0].metadata["not_fresh_jobs"].value
    assert checks[0].metadata["fresh"].value == 99
    assert JobStore(settings).coverage(MODEL_ID).fresh == 99
