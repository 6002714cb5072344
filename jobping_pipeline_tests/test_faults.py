"""Faults and bad input: killed processes, dropped connections, concurrent runs, edits and
deletes mid-run, hostile text, bad vectors. Real Postgres, real model; the faults are injected."""

import subprocess
import sys
import threading
import time

import numpy as np
import psycopg
import pytest
from dagster import DagsterInstance
from pgvector.psycopg import register_vector

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.embedded_postgres import DAGSTER_DATABASE
from jobping_pipeline.store import DatabaseUnavailable, JobStore
from jobping_pipeline.embedding import EmbeddingFailed, embed_chunk, embed_chunk_with_retries
from jobping_pipeline.faults import INFRASTRUCTURE, ONE_TEXT, InfrastructureFault, classify
from jobping_pipeline.models.openai_protocol import ApiAnswerInvalid, ApiRequestRefused, ApiUnavailable
from jobping_pipeline.texts import build_text

from .helpers import PROJECT_DIR, around_model_calls, charged_jobs, execute, kill_when, load_demo, make_settings, requested, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

STATE_COUNTS = """
SELECT count(*) FILTER (WHERE j.embedding IS NOT NULL AND s.embedded_version IS NOT NULL),
       count(*) FILTER (WHERE j.embedding IS NOT NULL AND s.embedded_version IS NULL),
       count(*) FILTER (WHERE j.embedding IS NULL AND s.embedded_version IS NOT NULL)
FROM jobs j JOIN jobping_pipeline.job_state s ON s.job_id = j.id
"""

EMBED_ONE_CHUNK = """
import sys
from jobping_pipeline.store import JobStore
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.models import ModelSpec, load_encoder
from jobping_pipeline.settings import load_settings
store = JobStore(load_settings({"JOBPING_DATABASE_URL": sys.argv[1]}))
encoder = load_encoder(ModelSpec(precision="fp32"))
print("loaded", flush=True)
embed_chunk(store, encoder, "000001", batch_size=4)
"""


def prepared(settings, jobs, **kwargs) -> JobStore:
    store = load_demo(settings, jobs, **kwargs)
    store.setup(384)
    store.register_chunks(scan_table=True)
    return store


def counts(url):
    with psycopg.connect(url) as connection:
        return connection.execute(STATE_COUNTS).fetchone()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [4, 40])
def test_a_run_killed_mid_write_loses_nothing_and_resumes(database_url, encoder, kill_after):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="120")
    prepared(settings, 120)
    process = subprocess.Popen(
        [sys.executable, "-c", EMBED_ONE_CHUNK, database_url],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    kill_when(process, lambda: counts(database_url)[0] >= kill_after, "a committed batch", timeout=240)
    committed, vector_without_state, state_without_vector = counts(database_url)
    assert vector_without_state == 0 and state_without_vector == 0, "a batch was half written"
    assert kill_after <= committed < 120
    calls = encoder.calls
    report = embed_chunk(JobStore(settings), encoder, "000001", batch_size=16)
    assert (report.unchanged, report.embedded) == (committed, 120 - committed)
    assert encoder.calls > calls
    assert counts(database_url) == (120, 0, 0)


def test_dropped_connections_are_retried_and_the_chunk_completes(settings, encoder, admin_url, monkeypatch):
    store = prepared(settings, 40)
    database = settings.database_url.split("/")[3].split("?")[0]
    real_write = JobStore.write_batch
    dropped = []

    def write_then_drop(self, connection, *args):
        written = real_write(self, connection, *args)
        if not dropped:
            dropped.append(True)
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )
        return written

    monkeypatch.setattr(JobStore, "write_batch", write_then_drop)
    report = embed_chunk_with_retries(store, encoder, "000001", batch_size=4, first_delay=0.2)
    assert dropped and report.unchanged == 32 and report.embedded == 8  # writes of 8 batches of 4
    assert counts(settings.database_url) == (40, 0, 0)


def test_a_database_that_stays_down_fails_fast_with_a_clear_message(encoder, tmp_path):
    settings = make_settings(f"postgresql://bob:hunter2@/jobs?host={tmp_path}", JOBPING_CHUNK_SIZE="10")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as raised:
        embed_chunk_with_retries(JobStore(settings), encoder, "000001", batch_size=8, attempts=3, first_delay=0.1)
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert "JOBPING_DATABASE_URL" in message and "unreachable in 3 attempts" in message
    assert "hunter2" not in message


def test_concurrent_runs_of_one_chunk_take_turns(settings, encoder):
    prepared(settings, 40)
    reports, errors = [], []

    def run():
        try:
            reports.append(embed_chunk(JobStore(settings), encoder, "000001", batch_size=8))
        except Exception as error:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors and len(reports) == 2
    assert sorted(report.embedded for report in reports) == [0, 40]
    assert sorted(report.unchanged for report in reports) == [0, 40]
    assert counts(settings.database_url) == (40, 0, 0)


def test_jobs_edited_or_deleted_mid_run(settings, encoder, monkeypatch):
    store = prepared(settings, 30)
    real_encode = type(encoder).encode
    fired = []

    def encode_while_editing(self, texts, batch_size):
        if not fired:
            fired.append(True)
            with psycopg.connect(settings.database_url, autocommit=True) as connection:
                connection.execute("UPDATE jobs SET description = 'Edited during the run' WHERE id = 5")
                connection.execute("DELETE FROM jobs WHERE id = 6")
                connection.execute("ALTER TABLE jobs DISABLE TRIGGER jobping_capture_delete")
                connection.execute("DELETE FROM jobs WHERE id = 7")
                connection.execute("ALTER TABLE jobs ENABLE TRIGGER jobping_capture_delete")
        return real_encode(self, texts, batch_size)

    monkeypatch.setattr(type(encoder), "encode", encode_while_editing)
    report = embed_chunk(store, encoder, "000001", batch_size=64)
    assert (report.deleted, report.embedded) == (2, 28)  # both counted, whatever the trigger did
    assert [chunk.chunk_key for chunk in store.dirty_chunks()] == ["000001"]
    monkeypatch.setattr(type(encoder), "encode", real_encode)
    again = embed_chunk(store, encoder, "000001", batch_size=64)
    assert (again.embedded, again.unchanged) == (1, 27)
    with psycopg.connect(settings.database_url) as connection:
        register_vector(connection)
        stored = connection.execute("SELECT embedding FROM jobs WHERE id = 5").fetchone()[0].to_numpy()
        text = build_text(connection.execute(
            "SELECT title, company, location, categories, description FROM jobs WHERE id = 5"
        ).fetchone())
    assert "Edited during the run" in text
    assert float(stored @ encoder.encode([text], 1)[0]) > 0.9999


HOSTILE = {
    "null description": ("Data analyst", "Acme", None),
    "empty description": ("Data analyst", "Acme", ""),
    "control characters": ("Koch\x01\x07", "Gasthaus\tKrone", "Line\x0bbreak\x1f and bell\x07"),
    "replacement characters": ("Fahrer \ufffd", "\ufffdLogistik", "Text with \ufffd\ufffd where bytes were bad"),
    "html": ("<b>Engineer</b>", "<script>alert(1)</script>", "<p>Build <a href='x'>things</a></p>&amp;"),
    "emoji": ("Barista ☕🔥", "Café 😊", "Great team 🚀🚀 and 🍕 Fridays"),
    "right to left": ("مهندس برمجيات", "شركة", "نبحث عن مهندس برمجيات ذو خبرة. מפתח תוכנה בכיר"),
    "cjk": ("ソフトウェアエンジニア", "株式会社テスト", "我们正在寻找一名经验丰富的软件工程师。"),
    "five megabytes": ("Archivist", "Big Library", "archive " * 655_360),
}


def test_hostile_text_embeds_or_fails_with_a_reason(settings, encoder):
    store = load_demo(settings, 0)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        for title, company, description in HOSTILE.values():
            connection.execute(
                "INSERT INTO jobs (title, company, description) VALUES (%s, %s, %s)", (title, company, description)
            )
        connection.execute("INSERT INTO jobs (title, company, description) VALUES ('   ', E'\\t', E' \\n ')")
        connection.execute("INSERT INTO jobs (title, company) VALUES ('', '')")
    store.setup(384)
    store.register_chunks(scan_table=True)
    with pytest.raises(EmbeddingFailed) as raised:
        embed_chunk(store, encoder, "000001", batch_size=4)
    message = str(raised.value)
    assert "2 jobs could not be embedded (the other 9 were written)" in message
    assert "2 jobs (10, 11): no text to embed" in message
    with psycopg.connect(settings.database_url) as connection:
        register_vector(connection)
        rows = connection.execute(
            "SELECT j.id, j.title, j.company, j.location, j.categories, j.description, j.embedding, s.last_error "
            "FROM jobs j JOIN jobping_pipeline.job_state s ON s.job_id = j.id ORDER BY j.id"
        ).fetchall()
    for row in rows[:9]:
        text = build_text(row[1:6])
        reference = encoder.model.encode([text], batch_size=1)[0]  # the model itself, without the pipeline
        stored = row[6].to_numpy()
        assert float(stored @ reference) > 0.999, (row[0], text[:40])
        assert row[7] is None
    assert [row[6] is None and "no text to embed" in row[7] for row in rows[9:]] == [True, True]


@pytest.mark.parametrize("bad", ["nan", "dimension"])
def test_bad_vectors_are_never_written(settings, encoder, monkeypatch, bad):
    store = prepared(settings, 12)
    real_model_encode = encoder.model.encode

    def broken(texts, **kwargs):
        vectors = np.asarray(real_model_encode(texts, **kwargs))
        if bad == "nan":
            vectors[0, 3] = np.nan
            return vectors
        return vectors[:, :100]

    monkeypatch.setattr(encoder.model, "encode", broken)
    with pytest.raises(EmbeddingFailed) as raised:
        embed_chunk(store, encoder, "000001", batch_size=4)
    assert ("NaN" if bad == "nan" else "shape") in str(raised.value)
    with psycopg.connect(settings.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NOT NULL").fetchone() == (0,)


# --- whose fault: one text's, or the infrastructure's (faults.py, store/state.md rule 11) -----------


class AcceleratorError(RuntimeError):
    """Named like torch.AcceleratorError (CUDA faults in torch 2.8+): matched by name."""


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError."""


def chained(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


WHOSE_FAULT = [
    # (error, whose fault)
    (psycopg.OperationalError("server closed the connection unexpectedly"), INFRASTRUCTURE),
    (psycopg.InterfaceError("the connection is closed"), INFRASTRUCTURE),
    (DatabaseUnavailable("cannot connect to JOBPING_DATABASE_URL"), INFRASTRUCTURE),
    (ApiUnavailable("the embeddings API failed 7 attempts; last: HTTP 503"), INFRASTRUCTURE),
    (ApiUnavailable("not sent: a request spent every retry 3 s ago"), INFRASTRUCTURE),
    (ApiRequestRefused("HTTP 401: Incorrect API key provided", 401), INFRASTRUCTURE),
    (ApiRequestRefused("HTTP 404: model not found", 404), INFRASTRUCTURE),
    (ApiRequestRefused("HTTP 400: '$.input' is invalid", 400), ONE_TEXT),
    (ApiRequestRefused("HTTP 413: input too long", 413), ONE_TEXT),
    (ApiAnswerInvalid("vector 0 has NaN or infinite values"), ONE_TEXT),
    (TimeoutError("timed out"), INFRASTRUCTURE),
    (ConnectionResetError("reset by peer"), INFRASTRUCTURE),
    (OSError(28, "No space left on device"), INFRASTRUCTURE),
    (MemoryError(), INFRASTRUCTURE),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), INFRASTRUCTURE),
    (AcceleratorError("CUDA error: an illegal memory access was encountered"), INFRASTRUCTURE),
    (RuntimeError("CUDA error: device-side assert triggered"), INFRASTRUCTURE),
    (RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 4 GB"), INFRASTRUCTURE),
    (chained(RuntimeError("encode failed"), psycopg.OperationalError("gone")), INFRASTRUCTURE),
    (InfrastructureFault("the model failed"), INFRASTRUCTURE),
    (ValueError("text input must be of type str"), ONE_TEXT),
    (TypeError("'NoneType' object is not iterable"), ONE_TEXT),
    (RuntimeError("injected model failure"), ONE_TEXT),
    (EmbeddingFailed("model returned NaN or infinite values"), ONE_TEXT),
    (IndexError("index out of range in self"), ONE_TEXT),
]


@pytest.mark.parametrize(("error", "whose"), WHOSE_FAULT, ids=[f"{type(e).__name__}: {e}"[:60] for e, _ in WHOSE_FAULT])
def test_whose_fault_an_error_is(error, whose):
    assert classify(error) == whose


def test_a_lost_gpu_fails_the_chunk_and_charges_no_job_while_a_bad_text_is_charged(settings, encoder, monkeypatch):
    store = prepared(settings, 12)
    execute(settings, "UPDATE jobs SET description = 'POISON' WHERE id = 2")
    gpu = {"lost": True}

    def model(texts):
        if gpu["lost"]:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if any("POISON" in text for text in texts):
            raise RuntimeError("injected model failure")

    around_model_calls(monkeypatch, encoder, model)
    with pytest.raises(InfrastructureFault, match="CUDA out of memory"):
        embed_chunk(store, encoder, "000001", batch_size=4)
    assert charged_jobs(store, encoder.model_id) == []
    gpu["lost"] = False
    with pytest.raises(EmbeddingFailed, match="1 jobs could not be embedded"):
        embed_chunk(store, encoder, "000001", batch_size=4)
    assert [(p.job_id, p.attempts) for p in store.problem_jobs(encoder.model_id)] == [("2", 1)]


def test_the_dagster_storage_restarted_during_a_backfill(database_url, admin_url, dagster_home, monkeypatch):
    """Dagster's storage database refuses every connection for 5 s from a run's first write, its
    connections cut (what a restart of that server does to its clients): the backfill either
    carries on or fails loudly, and then the next backfill and a sensor tick leave the table
    complete."""
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_BATCH_SIZE="4")
    store = load_demo(settings, 30)
    outage = []

    def storage(allow: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{DAGSTER_DATABASE}" ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (DAGSTER_DATABASE,)
                )

    real_write = JobStore.write_batch

    def write_while_the_dagster_storage_restarts(self, connection, *args):
        if not outage:
            storage(allow=False)
            outage.append(threading.Timer(5.0, storage, kwargs={"allow": True}))
            outage[0].start()
        return real_write(self, connection, *args)

    monkeypatch.setattr(JobStore, "write_batch", write_while_the_dagster_storage_restarts)
    try:
        with DagsterInstance.get() as instance:
            first = run_backfill(settings, instance, say=lambda line: None)
            assert outage, "the storage went down during the run"
            outage[0].join()
            if not first.complete:
                assert first.failed_chunks, "an incomplete backfill names its failed chunks"
                assert run_backfill(settings, instance, say=lambda line: None).complete
            assert requested(tick(settings, instance)) == []
    finally:
        if outage:
            outage[0].join()
        storage(allow=True)
    assert store.coverage(MODEL_ID).complete


def test_a_batch_out_of_memory_is_halved_until_it_fits(settings, encoder, monkeypatch):
    """Texts come longest first, so the batch that ran out of memory would on every try: it is
    split until it fits. Only a text that does not fit alone fails the run, and charges nobody."""
    store = prepared(settings, 12)
    execute(settings, "UPDATE jobs SET description = 'HUGE' WHERE id = 7")
    calls, huge = [], {"fits": False}

    def memory_for_two_texts(texts):
        calls.append(len(texts))
        if len(texts) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if "HUGE" in "".join(texts) and not huge["fits"]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 40.00 GiB")

    around_model_calls(monkeypatch, encoder, memory_for_two_texts)
    with pytest.raises(InfrastructureFault, match="out of memory"):
        embed_chunk(store, encoder, "000001", batch_size=8)
    assert charged_jobs(store, encoder.model_id) == []
    huge["fits"] = True
    report = embed_chunk(store, encoder, "000001", batch_size=8)
    assert report.failed == 0 and store.coverage(encoder.model_id).complete
    assert max(calls) > 2 and calls[-1] <= 2
