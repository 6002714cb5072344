"""The sensor, evaluated through Dagster's sensor testing API on a real instance and database."""

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG  # the tags Dagster's daemon matches run keys by

from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.partitions import JOB_CHUNKS
from jobping_pipeline.resources import EmbeddingModel
from jobping_pipeline.sensors import SENSOR_NAME
from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store import JobStore

from .helpers import execute, execute_request, load_demo, make_settings, requested, run_chunks, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def covered(database_url, encoder, instance):
    """30 demo jobs in chunks of 25, embedded through sensor-requested runs."""
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="25")
    store = load_demo(settings, 30)
    store.setup(encoder.dimensions)
    first = tick(settings, instance)
    assert requested(first) == ["000001", "000002"]
    assert instance.get_dynamic_partitions(JOB_CHUNKS) == ["000001", "000002"]
    run_chunks(settings, instance, first)
    return settings


def test_a_covered_table_needs_nothing_and_loads_no_model(covered, instance, monkeypatch):
    def no_model(self):
        raise AssertionError("an idle tick must not load the model")

    monkeypatch.setattr(EmbeddingModel, "encoder", no_model)
    result = tick(covered, instance)
    assert requested(result) == [] and result.dynamic_partitions_requests == []


def test_new_jobs_join_the_newest_chunk_and_get_a_run(covered, instance):
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO jobs (title, company, description) VALUES "
            "('Sous chef', 'Brasserie Lumiere', 'Paris kitchen'), ('Welder', 'Nordstahl', 'Night shifts')"
        )
    result = tick(covered, instance)
    assert requested(result) == ["000002"]
    assert instance.get_dynamic_partitions(JOB_CHUNKS) == ["000001", "000002"]
    run_chunks(covered, instance, result)
    assert requested(tick(covered, instance)) == []


def test_edits_trigger_a_run_for_their_chunk_only_when_the_text_changes(covered, instance):
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET updated_at = now() + interval '1 hour', is_active = false")
        connection.execute("UPDATE jobs SET embedding = embedding WHERE id < 5")
        assert requested(tick(covered, instance)) == []
        before = connection.execute("SELECT embedding::text FROM jobs WHERE id = 27").fetchone()
        connection.execute("UPDATE jobs SET description = 'Completely new description' WHERE id = 27")
    result = tick(covered, instance)
    assert requested(result) == ["000002"]
    run_chunks(covered, instance, result)
    with psycopg.connect(covered.database_url) as connection:
        assert connection.execute("SELECT embedding::text FROM jobs WHERE id = 27").fetchone() != before


def test_no_second_run_while_one_is_queued(covered, instance):
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET title = 'Lead ' || title WHERE id IN (3, 28)")
    job = build_definitions(covered).resolve_job_def(EMBED_JOB)
    instance.create_run_for_job(job, tags={"dagster/partition": "000001"}, status=DagsterRunStatus.STARTED)
    assert requested(tick(covered, instance)) == ["000002"]


def test_jobs_out_of_attempts_are_not_retried_every_tick(covered, instance):
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET title = 'Broken' WHERE id = 4")
        connection.execute("UPDATE jobping_pipeline.job_state SET attempts = 3, last_error = 'x' WHERE job_id = 4")
    assert requested(tick(covered, instance)) == []


def test_a_fresh_instance_gets_its_partition_keys_back(covered):
    with DagsterInstance.ephemeral() as fresh:
        result = tick(covered, fresh)
        assert fresh.get_dynamic_partitions(JOB_CHUNKS) == ["000001", "000002"]
        assert requested(result) == []


def test_changing_the_text_columns_reinstalls_the_trigger_and_reembeds(covered, instance):
    narrower = make_settings(covered.database_url, JOBPING_CHUNK_SIZE="25", JOBPING_TEXT_COLUMNS="title,description")
    store = JobStore(narrower)
    # Before setup has marked every job due, nothing counts them as fresh: the counts refuse.
    for count in (store.state_coverage, store.coverage):
        with pytest.raises(ConfigError, match="JOBPING_TEXT_COLUMNS is now title,description, but the vectors"):
            count(MODEL_ID)
    result = tick(narrower, instance)
    after_setup = store.state_coverage(MODEL_ID)
    assert (after_setup.fresh, after_setup.complete) == (0, False)
    assert requested(result) == ["000001", "000002"]
    run_chunks(narrower, instance, result)
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET company = 'Renamed GmbH' WHERE id = 2")
        assert requested(tick(narrower, instance)) == []
        connection.execute("UPDATE jobs SET title = 'Renamed role' WHERE id = 2")
    assert requested(tick(narrower, instance)) == ["000001"]


def test_a_run_before_setup_has_seen_new_text_columns_refuses_to_embed(covered, instance):
    narrower = make_settings(covered.database_url, JOBPING_CHUNK_SIZE="25", JOBPING_TEXT_COLUMNS="title,description")
    run = build_definitions(narrower).resolve_job_def(EMBED_JOB).execute_in_process(
        instance=instance, partition_key="000001", raise_on_error=False
    )
    assert not run.success, "a run (from the UI, say) must not embed half a chunk with the new columns before setup"
    assert any("JOBPING_TEXT_COLUMNS is now" in str(event.event_specific_data) for event in run.all_events)


def test_a_chunk_whose_runs_always_fail_is_retried_after_1_2_4_8_ticks(covered, instance):
    with psycopg.connect(covered.database_url, autocommit=True) as connection:
        # The column no longer fits the model: every run of the chunk fails before embedding anything.
        connection.execute("ALTER TABLE jobs DROP COLUMN embedding")
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding vector(768)")
        connection.execute("UPDATE jobs SET title = title || ' (edited)' WHERE id = 3")
    requested_at, run_keys = [], set()
    for number in range(20):
        for request in tick(covered, instance).run_requests:
            requested_at.append(number)
            run_keys.add(request.run_key)
            run = execute_request(covered, instance, request, raise_on_error=False)
            assert not run.success
    assert requested_at == [0, 2, 5, 10, 19]
    assert len(run_keys) == 5, "each retry is new work for Dagster's run-key deduplication"
    [(chunk_key, failed_runs, last_error)] = JobStore(covered).failing_chunks()
    assert (chunk_key, failed_runs) == ("000001", 5) and "vector(768)" in last_error


def test_trickling_jobs_fill_the_newest_chunk_before_a_new_one_opens(database_url, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="100")
    load_demo(settings, 600).setup(384)
    tick(settings, instance)
    assert instance.get_dynamic_partitions(JOB_CHUNKS) == [f"{number:06d}" for number in range(1, 7)]
    with psycopg.connect(database_url, autocommit=True) as connection:
        for number in range(30):
            connection.execute("INSERT INTO jobs (title, company) VALUES (%s, 'Trickle GmbH')", (f"Job {number}",))
            assert requested(tick(settings, instance))[-1] == "000007"
        counts = connection.execute("SELECT chunk_key, job_count FROM jobping_pipeline.chunks ORDER BY chunk_no").fetchall()
    assert len(counts) == 7 and counts[-1] == ("000007", 30)
    assert len(instance.get_dynamic_partitions(JOB_CHUNKS)) == 7


def test_an_edit_in_each_of_six_chunks_is_one_run(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    load_demo(settings, 60).setup(384)
    run_chunks(settings, instance, tick(settings, instance))
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET title = title || ' (senior)' WHERE id % 10 = 3")
    result = tick(settings, instance)
    assert len(result.run_requests) == 1
    assert requested(result) == [f"{number:06d}" for number in range(1, 7)]
    run_chunks(settings, instance, result)
    assert requested(tick(settings, instance)) == []
    assert JobStore(settings).coverage("sentence-transformers/all-MiniLM-L6-v2").complete


def test_a_switch_of_the_embedding_column_alone_reruns_setup_and_embeds_into_it(covered, instance):
    switched = make_settings(covered.database_url, JOBPING_CHUNK_SIZE="25", JOBPING_EMBEDDING_COLUMN="embedding_v2")
    sensor_result = tick(switched, instance)
    assert requested(sensor_result) == ["000001", "000002"]
    assert JobStore(switched).state_coverage(MODEL_ID).fresh == 0
    run_chunks(switched, instance, sensor_result)
    assert JobStore(switched).coverage(MODEL_ID).complete


def test_a_sensor_range_run_leaves_the_chunks_between_that_only_a_model_change_made_stale(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    store = load_demo(settings, 30)
    store.setup(encoder.dimensions)
    run_chunks(settings, instance, tick(settings, instance))
    # Another text template is another model id: every vector is stale for it.
    other = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_TEXT_TEMPLATE="sentences")
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET title = title || ' (edited)' WHERE id IN (1, 25)")
    [request] = tick(other, instance).run_requests
    assert request.tags["jobping/chunks"] == "000001,000003"
    job = build_definitions(other).resolve_job_def(EMBED_JOB)
    assert job.execute_in_process(instance=instance, tags=request.tags).success
    stale_for_the_new_model = {key for key, _ in JobStore(other).chunks_with_pending_work(f"{MODEL_ID}+text=sentences")}
    assert stale_for_the_new_model == {"000002"}, "re-embedding the table is a deliberate backfill"


# --- run keys that name the attempt (issue 23) ----------------------------------------------------


def skipped_by_dagster(instance, request) -> bool:
    """Dagster's own rule (dagster/_daemon/sensor.py, fetch_existing_runs and
    _get_or_create_sensor_run): a request is skipped when a run of this sensor with its run key
    exists in any status but NOT_STARTED."""
    runs = instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME}))
    return any(run.status != DagsterRunStatus.NOT_STARTED for run in runs)


def sensor_run(settings, instance, request):
    """The run the daemon creates for ``request``: its tags, its run key, NOT_STARTED."""
    job = build_definitions(settings).resolve_job_def(EMBED_JOB)
    tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME}
    if request.partition_key is not None:
        tags["dagster/partition"] = request.partition_key
    return instance.create_run_for_job(job, tags=tags, status=DagsterRunStatus.NOT_STARTED)


def terminated_from_the_ui(instance, run):
    instance.report_run_canceling(run)
    instance.report_run_canceled(run, message="terminated from the UI: the asset re-raised without recording")


def canceled_while_queued(instance, run):
    instance.report_run_canceled(run, message="canceled while queued")


def failed_unrecorded(instance, run):
    instance.report_run_failed(run, message="the database was down: the failure could not be recorded either")


ENDED_WITHOUT_DOING_THE_WORK = [terminated_from_the_ui, canceled_while_queued, failed_unrecorded]


@pytest.mark.parametrize("end", ENDED_WITHOUT_DOING_THE_WORK, ids=lambda end: end.__name__.replace("_", " "))
def test_a_run_that_ended_without_doing_the_work_never_blocks_the_next_request(covered, instance, end):
    execute(covered, "UPDATE jobs SET title = title || ' (edited)' WHERE id = 3")
    (first,) = tick(covered, instance).run_requests
    end(instance, sensor_run(covered, instance, first))
    (second,) = tick(covered, instance).run_requests
    assert requested_chunks(second) == ["000001"] and second.run_key != first.run_key
    assert not skipped_by_dagster(instance, second)
    assert execute_request(covered, instance, second).success
    assert tick(covered, instance).run_requests == []


def test_two_states_of_work_never_share_a_key(covered, instance):
    """Before request numbers: {X v10 a0, Y v9 a1} made v10:a1; Y succeeded, X failed once:
    {X v10 a1} made v10:a1 again, and Dagster skipped it."""
    execute(
        covered,
        "UPDATE jobping_pipeline.job_state SET text_version = 10, embedded_version = NULL, attempts = 0 WHERE job_id = 1",
        "UPDATE jobping_pipeline.job_state SET text_version = 9, embedded_version = NULL, attempts = 1 WHERE job_id = 2",
    )
    (first,) = tick(covered, instance).run_requests
    failed_unrecorded(instance, sensor_run(covered, instance, first))
    execute(
        covered,
        "UPDATE jobping_pipeline.job_state SET embedded_version = 9, attempts = 0 WHERE job_id = 2",
        "UPDATE jobping_pipeline.job_state SET attempts = 1 WHERE job_id = 1",
    )
    (second,) = tick(covered, instance).run_requests
    assert first.run_key.split(":")[1:3] == second.run_key.split(":")[1:3] == ["v10", "a1"]
    assert second.run_key != first.run_key and not skipped_by_dagster(instance, second)


def requested_chunks(request):
    return request.tags["jobping/chunks"].split(",")
