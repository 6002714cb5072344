"""Encoding ahead of the runs: the model's work moves to a thread that runs while Dagster starts,
and a run still embeds exactly the text each job has when the run reads it. Real Postgres, real
model, real Dagster runs."""

import re
import threading
import time

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from jobping_pipeline.backfill import register, run_backfill
from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.embedding import embed_chunk, texts_to_encode
from jobping_pipeline.encoding_ahead import EncodingAhead
from jobping_pipeline.models import BATCHES_PER_MODEL_CALL, spec_from_settings
from jobping_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG
from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store import JobStore
from jobping_pipeline.texts import build_text

from .helpers import around_model_calls, load_demo, refuse_poison


def encode_calls_by_thread(monkeypatch, encoder) -> list[str]:
    threads: list[str] = []
    around_model_calls(monkeypatch, encoder, lambda texts: threads.append(threading.current_thread().name))
    return threads


def stored_vector(database_url: str, job_id: int) -> np.ndarray:
    with psycopg.connect(database_url) as connection:
        register_vector(connection)
        return connection.execute("SELECT embedding FROM jobs WHERE id = %s", (job_id,)).fetchone()[0].to_numpy()


def job_text(store: JobStore, job_id: int) -> str:
    columns = ", ".join(store.inspect().text_columns)
    with psycopg.connect(store.settings.database_url) as connection:
        return build_text(connection.execute(f"SELECT {columns} FROM jobs WHERE id = %s", (job_id,)).fetchone())


def wait_until(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def distinct_texts(store: JobStore, encoder, *chunk_keys: str) -> int:
    with store.connect() as connection:
        return sum(len(texts_to_encode(store, encoder, connection, key)) for key in chunk_keys)


def chunks_planned(*chunk_keys: str):
    """A preparation for EncodingAhead that registers chunks the way a backfill does."""

    def prepare(store, encoder):
        store.prepare_chunks(encoder.dimensions)
        return None, list(chunk_keys)

    return prepare


def test_a_backfill_leaves_the_model_to_the_thread_and_writes_the_models_vectors(settings, encoder, instance, monkeypatch):
    store = load_demo(settings, 100)  # chunks of 40: three chunks, one run
    store.prepare_chunks(encoder.dimensions)
    texts = distinct_texts(store, encoder, "000001", "000002", "000003")  # distinct within each chunk
    threads = encode_calls_by_thread(monkeypatch, encoder)
    lines: list[str] = []
    result = run_backfill(settings, instance, say=lines.append)
    assert result.complete and result.jobs_embedded == 100
    assert threads and set(threads) == {"jobping-encoding-ahead"}, "the runs never had to call the model"
    thread_line = next(line for line in lines if line.startswith("encoding thread: model loaded in"))
    work = re.search(r"model at work from ([\d.]+) s to ([\d.]+) s .*; (\d+) texts encoded there", thread_line)
    assert work, thread_line
    assert float(work[1]) <= float(work[2]), "the last vectors came after the first model call"
    assert int(work[3]) == texts, "every text was encoded there"
    for job_id in (1, 41, 100):
        reference = encoder.encode([job_text(store, job_id)], batch_size=1)[0]
        assert float(stored_vector(settings.database_url, job_id) @ reference) > 0.9999


def test_a_run_of_several_chunks_encodes_the_next_chunk_while_it_writes_one(settings, encoder, instance, monkeypatch):
    store = load_demo(settings, 100)  # chunks of 40: 000001 to 000003
    register(store, instance, encoder)
    threads = encode_calls_by_thread(monkeypatch, encoder)
    run = build_definitions(settings).resolve_job_def(EMBED_JOB).execute_in_process(
        instance=instance, tags={RANGE_START_TAG: "000001", RANGE_END_TAG: "000003"}
    )
    assert run.success and store.coverage(encoder.model_id).complete
    assert threads and set(threads) == {"jobping-encoding-ahead"}
    wait_until(lambda: not any(thread.name == "jobping-encoding-ahead" for thread in threading.enumerate()), 10)


def test_a_text_edited_after_it_was_encoded_ahead_gets_the_vector_of_its_new_text(settings, encoder, monkeypatch):
    store = load_demo(settings, 40)
    ahead = EncodingAhead(spec_from_settings(settings), JobStore(settings), 16, chunks_planned("000001")).start()
    try:
        assert ahead.prepared()[0] is encoder
        texts = distinct_texts(store, encoder, "000001")
        wait_until(lambda: ahead.texts_encoded == texts)
        old_vector = encoder.encode([job_text(store, 7)], batch_size=1)[0]
        with psycopg.connect(settings.database_url, autocommit=True) as connection:
            connection.execute("UPDATE jobs SET description = 'Night shift nurse in Lyon, full time.' WHERE id = 7")
        threads = encode_calls_by_thread(monkeypatch, encoder)
        report = embed_chunk(store, encoder, "000001", batch_size=16, ahead=ahead)
    finally:
        ahead.stop()
    assert report.embedded == 40
    assert threads == ["MainThread"], "one model call, for the one text that changed"
    new_vector = encoder.encode([job_text(store, 7)], batch_size=1)[0]
    stored = stored_vector(settings.database_url, 7)
    assert float(stored @ new_vector) > 0.9999 and float(stored @ old_vector) < 0.99


def test_the_thread_stays_one_chunk_ahead_of_the_runs(settings, encoder):
    store = load_demo(settings, 120)  # chunks 000001 to 000003
    ahead = EncodingAhead(spec_from_settings(settings), JobStore(settings), 16, chunks_planned("000001", "000002", "000003")).start()
    try:
        ahead.prepared()
        two_chunks = distinct_texts(store, encoder, "000001", "000002")
        wait_until(lambda: ahead.texts_encoded == two_chunks)
        time.sleep(1.0)
        assert ahead.texts_encoded == two_chunks, "two chunks, then it waits for the runs"
        assert len(ahead.vectors("000001", [job_text(store, 1)])) == 1
        ahead.finished("000001")
        wait_until(lambda: ahead.texts_encoded == two_chunks + distinct_texts(store, encoder, "000003"))
    finally:
        ahead.stop()


def test_the_thread_encodes_a_chunk_in_one_pass_through_the_streams(settings, encoder):
    if encoder.backend == "torch":
        pytest.skip("sentence-transformers encodes in calls of BATCHES_PER_MODEL_CALL batches")
    store = load_demo(settings, 40)
    calls = encoder.calls
    ahead = EncodingAhead(spec_from_settings(settings), JobStore(settings), 2, chunks_planned("000001")).start()
    try:
        assert ahead.prepared()[0] is encoder
        texts = distinct_texts(store, encoder, "000001")
        assert texts > 2 * BATCHES_PER_MODEL_CALL
        wait_until(lambda: ahead.texts_encoded == texts)
    finally:
        ahead.stop()
    assert encoder.calls - calls == 1, "one pipeline for the chunk: no stream idles between model calls"


def test_jobs_the_model_fails_on_are_failed_by_the_run_with_the_models_error(settings, encoder, instance, monkeypatch):
    load_demo(settings, 100)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET description = 'POISON pill' WHERE id = 57")
    refuse_poison(monkeypatch, encoder)
    result = run_backfill(settings, instance, say=lambda line: None)
    assert not result.complete and list(result.failed_chunks) == ["000002"]
    assert "57" in result.failed_chunks["000002"] and "injected model failure" in result.failed_chunks["000002"]
    assert (result.coverage.fresh, result.coverage.failed) == (99, 1)


def test_a_failed_preparation_is_raised_to_the_caller(settings):
    def prepare(store, encoder):
        raise ConfigError("the preparation failed")

    ahead = EncodingAhead(spec_from_settings(settings), JobStore(settings), 16, prepare).start()
    with pytest.raises(ConfigError, match="the preparation failed"):
        ahead.prepared()
    ahead.stop()
    assert ahead.vectors("000001", ["any text"]) == {}
