"""Embedding chunks with the real model into a real Postgres, without Dagster."""

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from jobping_pipeline.embedding import EmbeddingFailed, UnknownChunk, embed_chunk
from jobping_pipeline.texts import build_text

from .helpers import load_demo, refuse_poison


def prepared_store(settings, jobs, **kwargs):
    store = load_demo(settings, jobs, **kwargs)
    store.setup(384)
    store.register_chunks(scan_table=True)
    return store


def stored_vectors(settings) -> dict:
    with psycopg.connect(settings.database_url) as connection:
        register_vector(connection)
        return dict(connection.execute("SELECT id, embedding FROM jobs WHERE embedding IS NOT NULL").fetchall())


def job_texts(store) -> dict:
    columns = ", ".join(store.inspect().text_columns)
    with psycopg.connect(store.settings.database_url) as connection:
        return {row[0]: build_text(row[1:]) for row in connection.execute(f"SELECT id, {columns} FROM jobs")}


def test_vectors_land_on_the_right_rows(settings, encoder):
    store = prepared_store(settings, 60)
    reports = [embed_chunk(store, encoder, key, batch_size=16) for key in ("000001", "000002")]
    assert sum(report.embedded for report in reports) == 60
    vectors = stored_vectors(settings)
    texts = job_texts(store)
    sample = sorted(texts)[::7]
    expected = encoder.encode([texts[job] for job in sample], batch_size=8)
    for job, reference in zip(sample, expected):
        stored = np.asarray(vectors[job].to_numpy())
        cosine = float(stored @ reference / np.linalg.norm(stored) / np.linalg.norm(reference))
        assert cosine > 0.9999, (job, cosine)
        assert abs(np.linalg.norm(stored) - 1.0) < 1e-3


def test_rerun_encodes_nothing_and_edits_are_reembedded(settings, encoder):
    store = prepared_store(settings, 30)
    embed_chunk(store, encoder, "000001", batch_size=16)
    calls = encoder.calls
    again = embed_chunk(store, encoder, "000001", batch_size=16)
    assert (again.embedded, again.unchanged, encoder.calls) == (0, 30, calls)
    before = stored_vectors(settings)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET description = 'Night shift nurse in Lyon, full time.' WHERE id = 7")
    report = embed_chunk(store, encoder, "000001", batch_size=16)
    assert (report.embedded, report.unchanged) == (1, 29)
    after = stored_vectors(settings)
    assert not np.allclose(before[7].to_numpy(), after[7].to_numpy())
    assert all(np.array_equal(before[job].to_numpy(), after[job].to_numpy()) for job in before if job != 7)


def test_identical_texts_are_encoded_once(settings, encoder):
    store = load_demo(settings, 0)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO jobs (title, company, description) "
            "SELECT 'Barista', 'Cafe Nord', 'Make coffee.' FROM generate_series(1, 12)"
        )
    store.setup(384)
    store.register_chunks(scan_table=True)
    report = embed_chunk(store, encoder, "000001", batch_size=16)
    assert (report.embedded, report.distinct_texts) == (12, 1)
    assert len({bytes(v.to_numpy().tobytes()) for v in stored_vectors(settings).values()}) == 1


def test_a_text_the_model_cannot_embed_fails_only_its_jobs_and_the_chunk(settings, encoder, monkeypatch):
    store = load_demo(settings, 40)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("UPDATE jobs SET description = 'POISON pill' WHERE id IN (20, 33)")
    store.setup(384)
    store.register_chunks(scan_table=True)
    refuse_poison(monkeypatch, encoder)
    with pytest.raises(EmbeddingFailed, match=r"2 jobs could not be embedded \(the other 38 were written\)") as raised:
        embed_chunk(store, encoder, "000001", batch_size=16)
    assert "2 jobs (20, 33): encode failed: RuntimeError: injected model failure" in str(raised.value)
    with psycopg.connect(settings.database_url) as connection:
        rows = connection.execute(
            "SELECT j.id, j.embedding IS NOT NULL, s.embedded_version IS NOT NULL, s.attempts, s.last_error "
            "FROM jobs j JOIN jobping_pipeline.job_state s ON s.job_id = j.id ORDER BY j.id"
        ).fetchall()
    failed = {row[0]: row for row in rows if row[0] in (20, 33)}
    assert all(row[1:4] == (False, False, 1) and "injected model failure" in row[4] for row in failed.values())
    assert all(row[1:4] == (True, True, 0) and row[4] is None for row in rows if row[0] not in failed)


def test_unknown_chunk_is_an_error(settings, encoder):
    store = prepared_store(settings, 3)
    with pytest.raises(UnknownChunk, match="999999"):
        embed_chunk(store, encoder, "999999", batch_size=16)


def test_jobs_deleted_after_registration_are_counted(settings, encoder):
    store = prepared_store(settings, 10)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE jobs DISABLE TRIGGER jobping_capture_delete")
        connection.execute("DELETE FROM jobs WHERE id IN (2, 3)")
    report = embed_chunk(store, encoder, "000001", batch_size=16)
    assert (report.jobs, report.deleted, report.embedded) == (10, 2, 8)
