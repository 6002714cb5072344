"""Embedding one chunk: the work behind every materialization of ``job_embeddings``.

read the chunk (one query) -> build texts -> hash -> skip unchanged -> encode each distinct text
once, longest first, 8 batches per model call -> write each call's vectors (one UPDATE + their
state, one transaction) while the model encodes the next. Vectors that a thread encoded ahead of
the run (:mod:`jobping_pipeline.encoding_ahead`) are taken for the texts they were made from.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np
import psycopg

from jobping_pipeline.store import ChunkRow, DatabaseUnavailable, JobStore
from jobping_pipeline.store.writes import ConfigurationChanged
from jobping_pipeline.models import BATCHES_PER_MODEL_CALL, Encoder
from jobping_pipeline.faults import InfrastructureFault, is_infrastructure, is_out_of_memory
from jobping_pipeline.settings import redact_url
from jobping_pipeline.texts import build_text, text_hash

logger = logging.getLogger(__name__)


class EmbeddingFailed(RuntimeError):
    """Jobs of a chunk could not be embedded; they carry the error in their state, and
    ``report`` says what the chunk's run did all the same."""

    def __init__(self, message: str, report: "ChunkReport | None" = None) -> None:
        super().__init__(message)
        self.report = report


class UnknownChunk(LookupError):
    """A partition key that the chunk registry does not know."""


@dataclass
class ChunkReport:
    """What one chunk's run did, in numbers (becomes the materialization's metadata)."""

    chunk_key: str
    jobs: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    distinct_texts: int = 0
    encode_seconds: float = 0.0
    database_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def jobs_per_second(self) -> float:
        return self.embedded / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class _Pending:
    """Jobs of one chunk that need a vector, grouped by their text."""

    ids_by_text: dict[str, list[Any]] = field(default_factory=dict)
    hash_by_text: dict[str, bytes] = field(default_factory=dict)
    versions: dict[Any, int] = field(default_factory=dict)


class VectorsAhead(Protocol):
    """Vectors encoded before the run asked for them (:class:`encoding_ahead.EncodingAhead`)."""

    def vectors(self, chunk_key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Those of ``texts`` that were encoded ahead, by text (waits for the ones under way)."""

    def finished(self, chunk_key: str) -> None:
        """The run is done with the chunk: what was encoded for it is let go."""


def validate_vectors(vectors: np.ndarray, count: int, dimensions: int) -> None:
    if vectors.shape != (count, dimensions):
        raise EmbeddingFailed(
            f"model returned an array of shape {vectors.shape}, expected ({count}, {dimensions})"
        )
    if not np.isfinite(vectors).all():
        raise EmbeddingFailed("model returned NaN or infinite values; nothing of this batch was written")


def embed_chunk(
    store: JobStore, encoder: Encoder, chunk_key: str, batch_size: int, ahead: VectorsAhead | None = None
) -> ChunkReport:
    """Bring every job of ``chunk_key`` up to date with ``encoder``. Jobs that cannot be
    embedded are recorded with their reason and raised as :class:`EmbeddingFailed` once every
    other job of the chunk is written. ``ahead``: vectors of this encoder encoded before the run,
    used for the texts they were made from (the others are encoded here).

    Holds the chunk's advisory lock throughout, so a concurrent run of the same chunk waits and
    then finds nothing left to do."""
    started = time.perf_counter()
    report = ChunkReport(chunk_key=chunk_key)
    failures: dict[str, list[Any]] = {}
    try:
        with store.chunk_lock(chunk_key), store.connect() as connection:
            try:
                pending = _read_pending(store, encoder, connection, chunk_key, report, failures)
                texts = sorted(pending.ids_by_text, key=len, reverse=True)
                report.distinct_texts = len(texts)
                if "" in pending.ids_by_text:
                    texts.remove("")
                    failures["no text to embed: every text column is empty or NULL"] = pending.ids_by_text[""]
                if texts:
                    _encode_and_write(store, encoder, texts, pending, batch_size, report, failures, chunk_key, ahead)
            finally:
                report.wall_seconds = time.perf_counter() - started
            if failures:
                _record_and_raise(store, failures, report)
    finally:
        if ahead is not None:
            ahead.finished(chunk_key)
    return report


TRANSIENT_ERRORS = (psycopg.OperationalError, DatabaseUnavailable)


def embed_chunk_with_retries(
    store: JobStore,
    encoder: Encoder,
    chunk_key: str,
    batch_size: int,
    *,
    attempts: int = 5,
    first_delay: float = 2.0,
    log=logger,
    ahead: VectorsAhead | None = None,
) -> ChunkReport:
    """:func:`embed_chunk`, retried with exponential backoff (2, 4, 8, 16 s) when the database
    drops the connection or restarts. What was committed before the drop is not redone; a
    database that stays down fails with a clear message after about 30 s."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return embed_chunk(store, encoder, chunk_key, batch_size, ahead)
        except TRANSIENT_ERRORS as error:
            if attempt == attempts:
                raise DatabaseUnavailable(
                    f"chunk {chunk_key}: the jobs database was unreachable in {attempts} attempts "
                    f"over {first_delay * (2 ** (attempts - 1) - 1):.0f} s; last error: "
                    f"{redact_url(_describe(error))}"
                ) from error
            log.warning(f"chunk {chunk_key}: database error ({redact_url(_describe(error))}); retry {attempt} in {delay:.0f} s")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _read_pending(
    store: JobStore, encoder: Encoder, connection, chunk_key: str, report: ChunkReport, failures: dict[str, list[Any]]
) -> _Pending:
    """Read the chunk, settle deleted and unchanged jobs, and return what needs the model. A job
    the read did not see is forgotten only if it is really gone (``why_not_written``)."""
    database_started = time.perf_counter()
    model_id = encoder.model_id
    pending = _Pending()
    jobs_in_chunk = store.chunk_job_count(connection, chunk_key)
    if jobs_in_chunk is None:
        raise UnknownChunk(
            f"chunk {chunk_key!r} is not in the registry; run `jobping-pipeline backfill` "
            "(or let the sensor run) to register chunks"
        )
    rows = store.read_chunk(connection, chunk_key, model_id)
    template, columns = encoder.spec.text_template, store.inspect().text_columns
    report.jobs = jobs_in_chunk
    report.unchanged = jobs_in_chunk - len(rows)  # up to date: not even read
    unseen: list[Any] = []
    unchanged_ids: list[Any] = []
    unchanged_hashes: list[bytes] = []
    unchanged_versions: list[int] = []
    for row in rows:
        if not row.exists:
            unseen.append(row.job_id)
            continue
        text, digest, up_to_date = _job_text(row, template, columns, model_id)
        if up_to_date:
            if row.embedded_version != row.text_version:
                unchanged_ids.append(row.job_id)
                unchanged_hashes.append(digest)
                unchanged_versions.append(row.text_version)
            report.unchanged += 1
            continue
        pending.ids_by_text.setdefault(text, []).append(row.job_id)
        pending.hash_by_text[text] = digest
        pending.versions[row.job_id] = row.text_version
    deleted, reasons = store.why_not_written(connection, unseen)
    for reason, job_ids in reasons.items():
        failures.setdefault(reason, []).extend(job_ids)
    store.forget_jobs(connection, deleted)
    store.record_unchanged(connection, unchanged_ids, unchanged_hashes, unchanged_versions, model_id)
    report.deleted += len(deleted)
    connection.commit()  # no transaction stays open while the model works
    report.database_seconds += time.perf_counter() - database_started
    return pending


def _job_text(row: ChunkRow, template: str, columns: Sequence[str], model_id: str) -> tuple[str, bytes, bool]:
    """The job's text, its hash, and whether its vector was made from that text by this model
    (and is still the very vector the pipeline wrote: one written by anyone else is embedded again)."""
    text = build_text(row.values, template, columns)
    digest = text_hash(text)
    return text, digest, row.vector_is_recorded and row.model_id == model_id and row.text_hash == digest


def texts_to_encode(store: JobStore, encoder: Encoder, connection, chunk_key: str) -> list[str]:
    """The distinct texts a run of ``chunk_key`` would encode now, longest first (its order),
    read without writing anything: what a thread encoding ahead of the runs works on."""
    template, columns = encoder.spec.text_template, store.inspect().text_columns
    texts = {}
    for row in store.read_chunk(connection, chunk_key, encoder.model_id):
        if row.exists:
            text, _, up_to_date = _job_text(row, template, columns, encoder.model_id)
            if text and not up_to_date:
                texts[text] = None
    return sorted(texts, key=len, reverse=True)


def _record_and_raise(store: JobStore, failures: dict[str, list[Any]], report: ChunkReport) -> None:
    described: list[str] = []
    for reason, job_ids in failures.items():
        store.record_failure(job_ids, reason)
        shown = ", ".join(map(str, sorted(job_ids)[:10])) + (", ..." if len(job_ids) > 10 else "")
        described.append(f"{len(job_ids)} jobs ({shown}): {reason}")
    report.failed = sum(len(job_ids) for job_ids in failures.values())
    raise EmbeddingFailed(
        f"chunk {report.chunk_key}: {report.failed} jobs could not be embedded "
        f"(the other {report.embedded} were written): " + "; ".join(described),
        report,
    )


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _raise_if_infrastructure(error: Exception) -> None:
    """An outage, an open circuit, a lost GPU: the run stops as a whole and no job is charged."""
    if is_infrastructure(error):
        raise InfrastructureFault(f"the model failed for a reason no text is to blame for: {_describe(error)}") from error


def _encode_isolating_failures(
    encoder: Encoder, batch: list[str], batch_size: int, failed_texts: dict[str, str]
) -> tuple[list[str], np.ndarray]:
    """Encode a batch; if it fails, encode its texts one by one so that one text the model
    cannot handle costs only its own jobs. Failed texts land in ``failed_texts`` with the reason.
    An infrastructure fault (:mod:`jobping_pipeline.faults`) is raised instead, charging no text."""
    try:
        vectors = encoder.encode(batch, batch_size=batch_size)
        validate_vectors(vectors, len(batch), encoder.dimensions)
        return batch, vectors
    except Exception as error:  # noqa: BLE001 - retried text by text below, every failure is recorded
        if is_out_of_memory(error) and len(batch) > 1:
            # Texts come longest first, so the same batch would fail on every try: halve it until
            # it fits; only one text that does not fit alone fails the run as a whole.
            return _encode_in_halves(encoder, batch, batch_size, failed_texts)
        _raise_if_infrastructure(error)
    texts: list[str] = []
    rows: list[np.ndarray] = []
    for text in batch:
        try:
            vector = encoder.encode([text], batch_size=1)
            validate_vectors(vector, 1, encoder.dimensions)
        except Exception as error:  # noqa: BLE001 - recorded per job and raised after the chunk
            _raise_if_infrastructure(error)
            failed_texts[text] = f"encode failed: {_describe(error)}"
            continue
        texts.append(text)
        rows.append(vector[0])
    return texts, (np.stack(rows) if rows else _no_vectors(encoder))


def _no_vectors(encoder: Encoder) -> np.ndarray:
    return np.empty((0, encoder.dimensions), dtype=np.float32)


def _encode_in_halves(
    encoder: Encoder, batch: list[str], batch_size: int, failed_texts: dict[str, str]
) -> tuple[list[str], np.ndarray]:
    middle = len(batch) // 2
    parts = [
        _encode_isolating_failures(encoder, part, max(1, min(batch_size, len(part)) // 2), failed_texts)
        for part in (batch[:middle], batch[middle:])
    ]
    texts = [text for part_texts, _ in parts for text in part_texts]
    vectors = [vectors for _, vectors in parts if len(vectors)]
    return texts, (np.concatenate(vectors) if vectors else _no_vectors(encoder))


def _encode_group(
    encoder: Encoder, group: list[str], batch_size: int, failed_texts: dict[str, str], ready: dict[str, np.ndarray]
) -> tuple[list[str], np.ndarray]:
    """The group's vectors in its order: ``ready`` ones as they are, the others encoded now."""
    if not ready:
        return _encode_isolating_failures(encoder, group, batch_size, failed_texts)
    missing = [text for text in group if text not in ready]
    if missing:
        encoded_texts, encoded = _encode_isolating_failures(encoder, missing, batch_size, failed_texts)
        ready = {**ready, **dict(zip(encoded_texts, encoded))}
    texts = [text for text in group if text in ready]
    vectors = np.stack([ready[text] for text in texts]) if texts else _no_vectors(encoder)
    validate_vectors(vectors, len(texts), encoder.dimensions)
    return texts, vectors


class _WriteFailed(Exception):
    """A write failed; its jobs are in ``failures``. Stops the chunk: the next write would too."""


def _write_error_reason(error: Exception, store: JobStore, connection) -> str:
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return (
            f"write failed: permission denied ({str(error).strip().splitlines()[0]}); the role needs "
            f"GRANT UPDATE ({store.settings.embedding_column}) ON {store.settings.jobs_table} (docs/operations.md, 'Least privilege')"
        )
    return f"write failed: {_describe(error)}"


def _encode_and_write(
    store: JobStore,
    encoder: Encoder,
    texts: list[str],
    pending: _Pending,
    batch_size: int,
    report: ChunkReport,
    failures: dict[str, list[Any]],
    chunk_key: str,
    ahead: VectorsAhead | None,
) -> None:
    """Encode group n+1 (``BATCHES_PER_MODEL_CALL`` batches in one model call) while a writer
    thread writes group n in one statement (at most one write in flight). Jobs that cannot be
    encoded or written go into ``failures`` with the reason; every other job is written. Texts
    encoded ``ahead`` take those vectors and cost the model nothing here.

    Interrupted (a signal, a run terminated from the UI), it stops at a batch boundary: the write
    in flight finishes and commits, nothing else starts."""
    model_id = encoder.model_id
    connection = store.writer_connection()
    in_flight: Future | None = None
    failures_lock = threading.Lock()

    def fail(reason: str, job_ids: list[Any]) -> None:
        with failures_lock:
            failures.setdefault(reason, []).extend(job_ids)

    def write(job_ids: list[Any], vectors: np.ndarray, hashes: list[bytes], versions: list[int]) -> None:
        write_started = time.perf_counter()
        try:
            written = store.write_batch(connection, job_ids, vectors, hashes, versions, model_id)
        except ConfigurationChanged:
            raise
        except Exception as error:
            if is_infrastructure(error):
                raise  # the database went away: not the jobs' fault
            fail(_write_error_reason(error, store, connection), job_ids)
            raise _WriteFailed() from error
        if len(written) != len(job_ids):
            written_set = set(written)
            deleted, reasons = store.why_not_written(connection, [job_id for job_id in job_ids if job_id not in written_set])
            logger.warning(
                "chunk %s: %d of %d rows updated; %d deleted during the run, %d not written: %s",
                report.chunk_key, len(written), len(job_ids), len(deleted), len(job_ids) - len(written) - len(deleted),
                "; ".join(reasons) or "-",
            )
            store.forget_jobs(connection, deleted)
            report.deleted += len(deleted)
            for reason, ids in reasons.items():
                fail(reason, ids)
        report.embedded += len(written)
        report.database_seconds += time.perf_counter() - write_started

    group_size = batch_size * BATCHES_PER_MODEL_CALL
    with connection, ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobping-writer") as writer:
        try:
            for start in range(0, len(texts), group_size):
                encode_started = time.perf_counter()
                failed_texts: dict[str, str] = {}
                batch, vectors = _encode_group(
                    encoder, texts[start : start + group_size], batch_size, failed_texts,
                    ahead.vectors(chunk_key, texts[start : start + group_size]) if ahead is not None else {},
                )
                for text, reason in failed_texts.items():
                    fail(reason, pending.ids_by_text[text])
                report.encode_seconds += time.perf_counter() - encode_started
                if not batch:
                    continue
                repeats = [len(pending.ids_by_text[text]) for text in batch]
                job_ids = [job_id for text in batch for job_id in pending.ids_by_text[text]]
                job_vectors = np.repeat(vectors, repeats, axis=0)
                hashes = [pending.hash_by_text[text] for text, count in zip(batch, repeats) for _ in range(count)]
                versions = [pending.versions[job_id] for job_id in job_ids]
                if in_flight is not None:
                    in_flight.result()  # re-raises a failed write before more work is queued
                in_flight = writer.submit(write, job_ids, job_vectors, hashes, versions)
            if in_flight is not None:
                in_flight.result()
        except _WriteFailed:
            pass  # recorded in failures; the jobs not yet written stay due
