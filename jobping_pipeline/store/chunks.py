"""The chunk registry: which jobs form which chunk (one partition of ``job_embeddings`` each),
which chunks have work to do, and the per-chunk lock that keeps two runs from doing it twice."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from psycopg import sql

from jobping_pipeline.store.catalog import Names, StoreBase, not_up_to_date
from jobping_pipeline.store.setup import enqueue_unregistered_jobs

ADVISORY_LOCK_REGISTER = 728_461_001
ADVISORY_LOCK_CHUNK = 728_461_002
REGISTER_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
CHUNK_KEY_WIDTH = 6


@dataclass(frozen=True)
class DirtyChunk:
    """A chunk with work for the sensor."""

    chunk_key: str
    jobs: int
    newest_version: int
    job_attempts: int
    failed_runs: int
    retry_at_tick: int | None

    def run_key(self, request_no: int) -> str:
        """Names this state of the chunk's work (newest version, job attempts, failed runs) and
        the number of the sensor's request for the chunk: no two requests share a key, so a run
        that ended without doing the work never blocks the next request."""
        return f"{self.chunk_key}:v{self.newest_version}:a{self.job_attempts}:f{self.failed_runs}:r{request_no}"


def assign_chunks(names: Names) -> sql.Composed:
    """Put every queued job into a chunk, in key order: first the newest chunk, until it holds
    ``%(chunk_size)s`` jobs, then new chunks of that size. So chunks (and partitions) stay at
    about jobs / chunk size however the jobs trickle in; the newest chunk gains jobs after it was
    materialized, and those jobs are simply dirty in it."""
    return sql.SQL(
        "WITH newest AS (SELECT chunk_no, job_count FROM {chunks} ORDER BY chunk_no DESC LIMIT 1), "
        "room AS (SELECT coalesce((SELECT chunk_no FROM newest), 0) AS chunk_no,"
        " coalesce((SELECT greatest(%(chunk_size)s - job_count, 0) FROM newest), 0) AS free), "
        "numbered AS ("
        " SELECT q.job_id, CASE WHEN q.n <= room.free THEN room.chunk_no"
        "  ELSE room.chunk_no + 1 + (q.n - room.free - 1) / %(chunk_size)s END AS chunk_no"
        " FROM (SELECT job_id, row_number() OVER (ORDER BY job_id) AS n FROM {job_state} WHERE chunk_no IS NULL) q"
        " CROSS JOIN room), "
        "new_chunks AS ("
        " INSERT INTO {chunks} (chunk_no, chunk_key, job_count)"
        " SELECT n.chunk_no, lpad(n.chunk_no::text, greatest({width}, length(n.chunk_no::text)), '0'), count(*)"
        " FROM numbered n, room WHERE n.chunk_no > room.chunk_no GROUP BY n.chunk_no RETURNING chunk_no), "
        "grown AS ("
        " UPDATE {chunks} c SET job_count = c.job_count + g.added"
        " FROM (SELECT n.chunk_no, count(*) AS added FROM numbered n, room WHERE n.chunk_no = room.chunk_no"
        "  GROUP BY n.chunk_no) g WHERE c.chunk_no = g.chunk_no) "
        "UPDATE {job_state} s SET chunk_no = n.chunk_no FROM numbered n "
        "WHERE s.job_id = n.job_id AND s.chunk_no IS NULL"
    ).format(chunks=names.state("chunks"), job_state=names.state("job_state"), width=sql.Literal(CHUNK_KEY_WIDTH))


def chunk_keys_after(names: Names) -> sql.Composed:
    return sql.SQL("SELECT chunk_key FROM {} WHERE chunk_no > %s ORDER BY chunk_no").format(names.state("chunks"))


def last_chunk_no(names: Names) -> sql.Composed:
    return sql.SQL("SELECT coalesce(max(chunk_no), 0) FROM {}").format(names.state("chunks"))


def all_chunk_keys(names: Names) -> sql.Composed:
    return sql.SQL("SELECT chunk_key FROM {} ORDER BY chunk_no").format(names.state("chunks"))


def chunks_with_pending_work(names: Names) -> sql.Composed:
    """Chunks holding a job that is not embedded from its current text by model ``%(model_id)s``,
    from the state (the triggers mirror a vector removed by the application; one removed behind
    their back is requeued by a backfill's setup and by the deep coverage check)."""
    return sql.SQL(
        "SELECT c.chunk_key, count(*) FROM {job_state} s "
        "JOIN {chunks} c ON c.chunk_no = s.chunk_no "
        "WHERE {not_up_to_date} "
        "GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"
    ).format(job_state=names.state("job_state"), chunks=names.state("chunks"), not_up_to_date=not_up_to_date("s"))


def dirty_chunks(names: Names) -> sql.Composed:
    """Chunks with a job whose text changed since its last embedding (or never embedded) and
    that has attempts left, with what identifies this state of their work (newest version, job
    attempts, failed runs) and when a failing chunk may be tried again. Served by the partial
    index job_state_dirty: no table scan."""
    return sql.SQL(
        """SELECT c.chunk_key, count(*), max(s.text_version), sum(s.attempts), c.failed_runs, c.retry_at_tick
        FROM {job_state} s JOIN {chunks} c ON c.chunk_no = s.chunk_no
        WHERE s.dirty AND s.attempts < %(max_attempts)s
        GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"""
    ).format(job_state=names.state("job_state"), chunks=names.state("chunks"))


def record_run_outcome(names: Names) -> sql.Composed:
    """A run of chunks ``%(chunk_keys)s`` failed as a whole (``%(error)s`` set) or succeeded
    (``%(error)s`` NULL): count the failure, or forget earlier ones."""
    return sql.SQL(
        "UPDATE {} SET failed_runs = CASE WHEN %(error)s::text IS NULL THEN 0 ELSE failed_runs + 1 END,"
        " last_run_error = %(error)s, retry_at_tick = NULL "
        "WHERE chunk_key = ANY(%(chunk_keys)s) AND (%(error)s::text IS NOT NULL OR failed_runs > 0)"
    ).format(names.state("chunks"))


def number_requests(names: Names) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET requests = requests + 1 WHERE chunk_key = ANY(%s) RETURNING chunk_key, requests"
    ).format(names.state("chunks"))


def schedule_retry(names: Names) -> sql.Composed:
    return sql.SQL("UPDATE {} SET retry_at_tick = %s WHERE chunk_key = %s").format(names.state("chunks"))


def advance_tick(names: Names) -> sql.Composed:
    """The sensor's tick counter (kept in the state, so backoff survives a new Dagster instance)."""
    return sql.SQL(
        "INSERT INTO {meta} AS m (key, value) VALUES ('sensor_tick', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = (m.value::bigint + 1)::text RETURNING value::bigint"
    ).format(meta=names.state("meta"))


def failing_chunks(names: Names) -> sql.Composed:
    return sql.SQL(
        "SELECT chunk_key, failed_runs, last_run_error FROM {} WHERE failed_runs > 0 ORDER BY chunk_no"
    ).format(names.state("chunks"))


def chunk_progress(names: Names) -> sql.Composed:
    """Per chunk: jobs, and jobs not embedded from their current text by ``%(model_id)s``
    (state only: cheap at any size)."""
    return sql.SQL(
        "SELECT c.chunk_key, count(s.job_id),"
        " count(s.job_id) FILTER (WHERE {not_up_to_date}),"
        " count(s.job_id) FILTER (WHERE s.last_error IS NOT NULL AND {not_up_to_date}) "
        "FROM {chunks} c LEFT JOIN {job_state} s ON s.chunk_no = c.chunk_no "
        "GROUP BY c.chunk_no, c.chunk_key ORDER BY c.chunk_no"
    ).format(chunks=names.state("chunks"), job_state=names.state("job_state"), not_up_to_date=not_up_to_date("s"))


def unassigned_count(names: Names) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} WHERE chunk_no IS NULL").format(names.state("job_state"))


def chunk_lock(names: Names) -> sql.Composed:
    """A transaction-level advisory lock per chunk: two runs of one chunk take turns."""
    return sql.SQL("SELECT pg_advisory_xact_lock(%s, chunk_no) FROM {} WHERE chunk_key = %s").format(
        names.state("chunks")
    )


class ChunkStore(StoreBase):
    def register_chunks(self, *, scan_table: bool) -> list[str]:
        """Put queued jobs into new chunks; returns the new chunk keys. ``scan_table`` first
        queues every job without state (a full scan: for setup and backfill, not sensor ticks)."""
        names = self.names()
        with self.connect(vectors=False) as connection:
            connection.execute(REGISTER_LOCK, (ADVISORY_LOCK_REGISTER,))
            if scan_table:
                connection.execute(enqueue_unregistered_jobs(names))
            (last,) = connection.execute(last_chunk_no(names)).fetchone()
            connection.execute(assign_chunks(names), {"chunk_size": self.settings.chunk_size})
            keys = [key for (key,) in connection.execute(chunk_keys_after(names), (last,))]
            connection.commit()
        return keys

    def chunk_keys(self) -> list[str]:
        with self.connect(autocommit=True, vectors=False) as connection:
            return [key for (key,) in connection.execute(all_chunk_keys(self.names()))]

    def chunks_with_pending_work(self, model_id: str) -> list[tuple[str, int]]:
        with self.connect(autocommit=True, vectors=False) as connection:
            rows = connection.execute(chunks_with_pending_work(self.names()), {"model_id": model_id})
            return [(key, count) for key, count in rows]

    def dirty_chunks(self) -> list[DirtyChunk]:
        """Chunks with new or edited jobs that have attempts left (cheap: a partial index)."""
        with self.connect(autocommit=True, vectors=False) as connection:
            rows = connection.execute(dirty_chunks(self.names()), {"max_attempts": self.settings.max_attempts})
            return [DirtyChunk(*row) for row in rows]

    def record_run_outcome(self, chunk_keys: list[str], error: str | None) -> None:
        """After a run of these chunks: ``error`` when it failed as a whole, None when it ran."""
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(
                record_run_outcome(self.names()),
                {"chunk_keys": list(chunk_keys), "error": error[:2000] if error else None},
            )

    def advance_tick(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(advance_tick(self.names())).fetchone()[0]

    def number_requests(self, chunk_keys: list[str]) -> dict[str, int]:
        """Count a new request for each of these chunks; returns each one's number."""
        if not chunk_keys:
            return {}
        with self.connect(autocommit=True, vectors=False) as connection:
            return dict(connection.execute(number_requests(self.names()), (list(chunk_keys),)).fetchall())

    def schedule_retry(self, chunk_key: str, tick: int) -> None:
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(schedule_retry(self.names()), (tick, chunk_key))

    def failing_chunks(self) -> list[tuple[str, int, str]]:
        """(chunk key, failed runs in a row, last error) of chunks whose last run failed."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(connection.execute(failing_chunks(self.names())))

    def chunk_progress(self, model_id: str) -> list[tuple[str, int, int, int]]:
        """(chunk key, jobs, jobs to do, failed) for every chunk."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(connection.execute(chunk_progress(self.names()), {"model_id": model_id}))

    def unassigned_count(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(unassigned_count(self.names())).fetchone()[0]

    @contextlib.contextmanager
    def chunk_lock(self, chunk_key: str):
        """Hold the chunk's advisory lock while the block runs: a second run of the same chunk
        waits, then finds the work done instead of doing it twice. The lock lives in a
        transaction kept open on a connection of its own, so it holds through a transaction-mode
        pooler (PgBouncer, Supavisor) too, where session locks would land on random backends."""
        with self.connect(vectors=False) as connection:
            connection.execute(chunk_lock(self.names()), (ADVISORY_LOCK_CHUNK, chunk_key))
            try:
                yield
            finally:
                if not connection.closed:
                    connection.rollback()
