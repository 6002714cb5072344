"""The openai provider wired into the pipeline: its settings, its model id without a request,
a real ``jobping-pipeline backfill`` against a local OpenAI-compatible server that answers a 429
and a 500 on the way, every vector proven to be its own row's, the API key nowhere it could leak,
a provider switch that makes every job stale, a server outage that fails a chunk fast, and the
dimension-mismatch message."""

from __future__ import annotations

import json
import time

import numpy as np
import psycopg
import pytest
from dagster import DagsterInstance
from pgvector.psycopg import register_vector

from jobping_pipeline import cli
from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.definitions import build_definitions
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.faults import InfrastructureFault
from jobping_pipeline.models import ModelSpec, spec_from_settings
from jobping_pipeline.models.openai_api import PROBE_TEXT, ApiSpec, OpenAIEncoder
from jobping_pipeline.resources import EmbeddingModel, build_resources, resolved
from jobping_pipeline.settings import ConfigError, load_settings
from jobping_pipeline.texts import build_text

from .helpers import charged_jobs, load_demo, make_settings, run_chunks, run_cli, tick
from .openai_server import FakeEmbeddingsServer, vector_for

API_KEY = "sk-jobping-7Qz-fake-key-MUST-NEVER-SHOW"
TEXT_COLUMNS = ("title", "company", "location", "categories", "description")


@pytest.fixture
def server():
    with FakeEmbeddingsServer(api_key=API_KEY) as running:
        yield running


def openai_settings(database_url: str, server: FakeEmbeddingsServer, **overrides: str):
    return make_settings(database_url, JOBPING_PROVIDER="openai", OPENAI_BASE_URL=server.base_url, **overrides)


def stored_vectors(database_url: str, column: str = "embedding") -> list[tuple[str, np.ndarray]]:
    """(text built from the row's own columns, its stored vector) for every job."""
    with psycopg.connect(database_url) as connection:
        register_vector(connection)
        rows = connection.execute(
            f"SELECT {', '.join(TEXT_COLUMNS)}, {column} FROM jobs ORDER BY id"
        ).fetchall()
    return [(build_text(row[:-1]), None if row[-1] is None else row[-1].to_numpy()) for row in rows]


def assert_every_vector_is_its_rows(database_url: str, dimensions: int, column: str = "embedding") -> None:
    rows = stored_vectors(database_url, column)
    assert rows and all(vector is not None for _, vector in rows)
    # Demo postings repeat texts now and then; the check needs enough distinct ones to mean "its own".
    assert len({text for text, _ in rows}) > 0.9 * len(rows)
    wrong = [text for text, vector in rows if not np.array_equal(vector, vector_for(text, dimensions))]
    assert wrong == [], f"{len(wrong)} rows hold a vector that is not their own text's"


# --- settings ------------------------------------------------------------------------------------


def test_openai_settings_and_their_defaults():
    settings = load_settings({"JOBPING_PROVIDER": "OpenAI", "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert (settings.provider, settings.model_name, settings.dimensions) == ("openai", "text-embedding-3-small", None)
    assert (settings.api_concurrency, settings.openai_base_url) == (4, "http://127.0.0.1:8000/v1")
    local = load_settings({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"})
    assert (local.provider, local.model_name, local.openai_base_url) == (
        "sentence-transformers",
        "sentence-transformers/all-MiniLM-L6-v2",
        None,
    )
    tuned = load_settings({"JOBPING_PROVIDER": "openai", "JOBPING_DIMENSIONS": "512", "JOBPING_API_CONCURRENCY": "8"})
    assert (tuned.dimensions, tuned.api_concurrency) == (512, 8)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBPING_PROVIDER": "bogus"}, "JOBPING_PROVIDER='bogus' must be one of sentence-transformers, openai"),
        ({"JOBPING_PROVIDER": "openai", "JOBPING_DIMENSIONS": "0"}, "JOBPING_DIMENSIONS='0' must be at least 1"),
        ({"JOBPING_PROVIDER": "openai", "JOBPING_API_CONCURRENCY": "x"}, "JOBPING_API_CONCURRENCY='x' is not a whole"),
        ({"JOBPING_DIMENSIONS": "256"}, "JOBPING_DIMENSIONS=256 applies to JOBPING_PROVIDER=openai only"),
        (
            {"JOBPING_PROVIDER": "openai", "JOBPING_MAX_SEQ_LENGTH": "128"},
            "JOBPING_MAX_SEQ_LENGTH=128 applies to JOBPING_PROVIDER=sentence-transformers only",
        ),
        (
            {"JOBPING_PROVIDER": "openai", "OPENAI_BASE_URL": "ftp://user:pw9@host/v1"},
            "OPENAI_BASE_URL='ftp://***@host/v1' must be an http(s) URL",
        ),
        ({"JOBPING_PROVIDER": "openai", "OPENAI_BASE_URL": "http://host:99999/v1"}, "OPENAI_BASE_URL="),
    ],
)
def test_bad_provider_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value).startswith(message) and "pw9" not in str(raised.value)


def test_a_bogus_provider_stops_the_command_with_one_line_naming_it(database_url, data_dir):
    result = run_cli(
        "jobping-pipeline", "setup", env={"JOBPING_DATABASE_URL": database_url, "JOBPING_PROVIDER": "bogus"}
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "JOBPING_PROVIDER='bogus' must be one of" in lines[0]


# --- the resource: spec without a request, one encoder per process, no key anywhere --------------


def test_the_spec_names_the_encoders_model_id_without_a_request(database_url, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    model = build_resources(openai_settings(database_url, server, JOBPING_DIMENSIONS="256"))["embedding_model"]
    spec = model.spec()
    assert isinstance(spec, ApiSpec) and server.requests == []
    assert spec.model_id == f"openai+{server.base_url.removesuffix('/v1')}:text-embedding-3-small@256"
    encoder = model.encoder()
    assert isinstance(encoder, OpenAIEncoder)
    assert (encoder.model_id, encoder.dimensions, encoder.device) == (spec.model_id, 256, "api")
    assert model.encoder() is encoder and EmbeddingModel(**model.model_dump()).encoder() is encoder
    assert [request.inputs for request in server.requests] == [[PROBE_TEXT]]


def test_the_key_is_no_field_config_or_repr_of_any_resource(monkeypatch, server):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("JOBPING_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    settings = load_settings()
    assert "OPENAI_API_KEY" not in settings.raw and API_KEY not in repr(settings)
    for resource in build_definitions(settings).resources.values():
        assert API_KEY not in repr(resource) and API_KEY not in repr(resource.model_dump())
        assert API_KEY not in repr(resolved(resource).model_dump())


def test_every_provider_model_and_server_has_its_own_model_id():
    specs = [
        spec_from_settings(load_settings(env))
        for env in (
            {},
            {"JOBPING_PROVIDER": "openai"},
            {"JOBPING_PROVIDER": "openai", "JOBPING_MODEL": "text-embedding-3-large"},
            {"JOBPING_PROVIDER": "openai", "JOBPING_DIMENSIONS": "512"},
            {"JOBPING_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"},
            {"JOBPING_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:8001/v1"},
        )
    ]
    assert isinstance(specs[0], ModelSpec) and all(isinstance(spec, ApiSpec) for spec in specs[1:])
    assert len({spec.model_id for spec in specs}) == len(specs)


# --- the whole pipeline against a real HTTP server -----------------------------------------------


@pytest.mark.slow
def test_cli_backfill_through_the_api_survives_429_and_500_and_leaks_no_key(
    database_url, data_dir, dagster_home, server
):
    load_demo(make_settings(database_url), 600)
    env = {
        "JOBPING_DATABASE_URL": database_url,
        "JOBPING_CHUNK_SIZE": "200",
        "JOBPING_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
    }
    # Request 1 is the probe; 2 and 4 are embedding requests of the first chunk.
    server.fail_at(2, status=429, headers={"Retry-After": "1"})
    server.fail_at(4, status=500)
    with DagsterInstance.get() as instance:
        runs_before = {run.run_id for run in instance.get_runs()}

    backfill = run_cli("jobping-pipeline", "backfill", env=env)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr[-3000:]
    model_id = f"openai+{server.base_url.removesuffix('/v1')}:text-embedding-3-small"
    assert f"600 jobs to embed with {model_id} on api" in backfill.stdout
    assert backfill.stdout.strip().splitlines()[-1].startswith("coverage 100.00%: 600 of 600 jobs")
    assert server.pending_faults == 0
    assert "HTTP 429" in backfill.stderr and "HTTP 500" in backfill.stderr  # the retries, logged
    assert sum(request.inputs == [PROBE_TEXT] for request in server.requests) == 1  # one encoder per process
    assert all(request.authorization_matches for request in server.requests)

    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT DISTINCT vector_dims(embedding) FROM jobs").fetchall() == [(1536,)]
        assert connection.execute(
            "SELECT model_id, count(*) FROM jobping_pipeline.job_state GROUP BY model_id"
        ).fetchall() == [(model_id, 600)]
        stored_text = connection.execute(
            "SELECT string_agg(coalesce(last_error, '') || model_id, '') FROM jobping_pipeline.job_state"
        ).fetchone()[0] + str(connection.execute("SELECT * FROM jobping_pipeline.meta").fetchall())
    assert_every_vector_is_its_rows(database_url, 1536)

    requests_before_status = len(server.requests)
    status = run_cli("jobping-pipeline", "status", "--json", env={**env, "JOBPING_GRACE_MINUTES": "0"})
    assert status.returncode == 0, status.stderr[-2000:]
    assert json.loads(status.stdout)["fresh"] == 600
    # Switching back to the local provider: every job is stale by model id; status loads no model.
    local_env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_GRACE_MINUTES": "0"}
    switched = run_cli("jobping-pipeline", "status", "--json", env=local_env)
    assert switched.returncode == 1
    assert {key: json.loads(switched.stdout)[key] for key in ("fresh", "stale")} == {"fresh": 0, "stale": 600}
    assert len(server.requests) == requests_before_status  # status never calls the API

    with DagsterInstance.get() as instance:
        new_runs = [run for run in instance.get_runs() if run.run_id not in runs_before]
        assert len(new_runs) == 1 and new_runs[0].is_success, "600 jobs in 3 chunks: one range run"
        records = [record for run in new_runs for record in instance.all_logs(run.run_id)]
        run_records = [str(run.run_config) + str(run.tags) for run in new_runs]
    assert len(records) > 15, "no event logs to scan: the check below would be vacuous"
    shown = [backfill.stdout, backfill.stderr, status.stdout, status.stderr, switched.stdout, stored_text]
    shown += run_records + [str(record) for record in records]
    assert [text[:200] for text in shown if API_KEY in text] == []


def test_a_provider_switch_makes_every_job_stale_and_a_second_column_keeps_the_first(
    database_url, instance, server, monkeypatch
):
    """jobping's migration, option B: the seed system's 1536-d column stays; a second column
    beside it, with its own state schema, fills with another model."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    first = openai_settings(database_url, server, JOBPING_CHUNK_SIZE="20")
    load_demo(first, 30)
    assert run_backfill(first, instance, say=lambda line: None).complete
    before = stored_vectors(database_url)
    first_model = build_resources(first)["embedding_model"].spec().model_id
    store = resolved(build_resources(first)["jobs_database"]).store()

    for switched in ({"JOBPING_PROVIDER": "sentence-transformers"}, {"JOBPING_MODEL": "text-embedding-3-large"}):
        settings = make_settings(database_url, **{**first.raw, **switched})
        coverage = store.coverage(build_resources(settings)["embedding_model"].spec().model_id)
        assert (coverage.fresh, coverage.stale) == (0, 30), switched

    second = openai_settings(
        database_url,
        server,
        JOBPING_CHUNK_SIZE="20",
        JOBPING_DIMENSIONS="256",
        JOBPING_EMBEDDING_COLUMN="embedding_256",
        JOBPING_STATE_SCHEMA="jobping_256",
    )
    result = run_backfill(second, instance, say=lambda line: None)
    assert result.complete and result.jobs_embedded == 30
    assert_every_vector_is_its_rows(database_url, 256, column="embedding_256")
    after = stored_vectors(database_url)
    assert all(np.array_equal(old, new) for (_, old), (_, new) in zip(before, after))
    assert store.coverage(first_model).fresh == 30
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET title = 'Harbour pilot' WHERE id = 1")
    second_model = build_resources(second)["embedding_model"].spec().model_id
    second_store = resolved(build_resources(second)["jobs_database"]).store()
    assert store.job_states(first_model, [1]) == {1: "pending"}, "each state schema follows every edit"
    assert second_store.job_states(second_model, [1]) == {1: "pending"}


def test_an_unavailable_api_fails_the_chunk_fast_and_charges_no_job(database_url, server):
    """An outage is the infrastructure's fault: the chunk fails at once as a whole (no text by
    text retry against a server that is down), and no job loses an attempt to it."""
    settings = openai_settings(database_url, server)
    store = load_demo(settings, 100)
    spec = ApiSpec("text-embedding-3-small", base_url=server.base_url, max_retries=2)
    encoder = OpenAIEncoder(spec, api_key=API_KEY, sleep=lambda seconds: None)
    store.setup(encoder.dimensions)
    store.register_chunks(scan_table=True)
    server.fail_next(status=500, times=1000)
    with pytest.raises(InfrastructureFault, match="HTTP 500"):
        embed_chunk(store, encoder, "000001", batch_size=16)
    assert len(server.requests) <= 1 + 4 * 3  # the probe, then one model call: 4 concurrent requests of 3 attempts
    coverage = store.coverage(encoder.model_id)
    assert (coverage.failed, coverage.fresh) == (0, 0)
    assert charged_jobs(store, encoder.model_id) == []


# --- the dimension-mismatch message ----------------------------------------------------------------


def test_a_dimension_mismatch_names_every_way_on(settings):
    store = load_demo(settings, 3)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION vector")
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding vector(1536)")
    store.inspect(refresh=True)
    with pytest.raises(ConfigError) as raised:
        store.check_dimensions(384, "sentence-transformers/all-MiniLM-L6-v2")
    message = str(raised.value)
    assert "makes 384-dimensional vectors but public.jobs.embedding is vector(1536)" in message
    ways = [
        "(a) keep the column",
        "JOBPING_PROVIDER=openai JOBPING_MODEL=text-embedding-3-small",
        "(b) embed into a second column",
        "JOBPING_EMBEDDING_COLUMN=<new column>",
        "JOBPING_STATE_SCHEMA=<a state schema of its own",
        "then drop the old column",
        "(c) replace the column: `jobping-pipeline prepare-model-change --yes` drops",
    ]
    assert [way for way in ways if way not in message] == []
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE jobs DROP COLUMN embedding")
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding vector(768)")
    store.inspect(refresh=True)
    with pytest.raises(ConfigError, match=r"configure a 768-dimensional model \(JOBPING_MODEL; with .*JOBPING_DIMENSIONS=768"):
        store.check_dimensions(384)


# --- an outage strands no job (issue 23) -----------------------------------------------------------


def test_an_outage_across_three_backfills_strands_no_job(database_url, server, instance, monkeypatch):
    """The API answers 503 to everything once a few requests have gone through; three backfills
    fail; the server recovers: no job was charged an attempt, and the sensor requests every
    chunk with work within the backoff and completes the table."""
    import jobping_pipeline.models.openai_api as openai_encoder

    monkeypatch.setattr(openai_encoder, "backoff_delay", lambda attempt: 0.0)  # retries, compressed in time
    monkeypatch.setattr(openai_encoder, "FAIL_FAST_SECONDS", 1.0)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    settings = openai_settings(database_url, server, JOBPING_CHUNK_SIZE="10", JOBPING_BATCH_SIZE="4")
    store = load_demo(settings, 60)
    for request_number in range(4, 5000):
        server.fail_at(request_number, status=503)
    for _ in range(3):
        result = run_backfill(settings, instance, say=lambda line: None)
        assert not result.complete and result.failed_chunks
        assert all("503" in message for message in result.failed_chunks.values()), result.failed_chunks
        assert all(map(cli.failed_for_an_outage, result.failed_chunks.values())), "the CLI exits 3, naming an outage"
    model_id = spec_from_settings(settings).model_id
    assert charged_jobs(store, model_id) == [], "an outage is no job's fault"
    assert all(runs >= 3 for _, runs, _ in store.failing_chunks())

    server.recover()
    time.sleep(1.0)  # the encoder's circuit closes
    ticks = 0
    while not store.coverage(model_id).complete:
        ticks += 1
        assert ticks <= 4 + 3, "every chunk with work is requested within the backoff (4 ticks after 3 failed runs)"
        run_chunks(settings, instance, tick(settings, instance))
    assert_every_vector_is_its_rows(database_url, 1536)


def test_an_api_that_refuses_the_key_at_start_is_one_line(database_url, server, data_dir, dagster_home):
    load_demo(make_settings(database_url), 3)
    env = {
        "JOBPING_DATABASE_URL": database_url, "JOBPING_PROVIDER": "openai",
        "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-wrong-key",
    }
    result = run_cli("jobping-pipeline", "backfill", env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert "refused the credentials" in lines[0] and "check OPENAI_API_KEY" in lines[0]
