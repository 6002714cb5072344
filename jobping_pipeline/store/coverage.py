"""Coverage and health: how many eligible jobs have a fresh vector, which do not and why, and
whether the stored vectors are sane. Counted from the jobs table itself, joined to the state;
the states and their meaning are defined in ``jobping_pipeline/store/state.md``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from psycopg import sql

from jobping_pipeline.store.catalog import Names, StoreBase

# The coverage join hashes a million small state rows; with the default 4 MB it spills to disk
# and takes twice as long (3.9 s vs 1.7 s at 1M jobs, benchmarks/throughput.py --scale).
COVERAGE_WORK_MEM = sql.SQL("SET LOCAL work_mem = '64MB'")


@dataclass(frozen=True)
class Coverage:
    """Counts over the eligible jobs. ``pending`` jobs (added or edited within the grace period)
    are neither counted as covered nor as missing."""

    eligible: int
    fresh: int
    pending: int
    stale: int
    missing: int
    failed: int

    @property
    def percent(self) -> float:
        due = self.eligible - self.pending
        return 100.0 if due <= 0 else 100.0 * self.fresh / due

    @property
    def complete(self) -> bool:
        return self.fresh + self.pending == self.eligible


@dataclass(frozen=True)
class ProblemJob:
    job_id: str
    has_vector: bool
    attempts: int
    last_error: str | None

    def describe(self) -> str:
        if self.last_error:
            return f"{self.job_id}: failed {self.attempts}x: {self.last_error}"
        return f"{self.job_id}: {'stale vector' if self.has_vector else 'no vector'}"


def job_status(names: Names, eligible_column: str | None) -> sql.Composed:
    """One row per eligible job with its freshness classified (shared by every check query).
    fresh: embedded from its current text by %(model_id)s; young: added or edited within the
    grace period and not failed (so pending if not fresh); stale: has a vector, from another
    model or older text; missing: no vector."""
    eligible = sql.SQL("j.{} IS TRUE").format(sql.Identifier(eligible_column)) if eligible_column else sql.SQL("TRUE")
    return sql.SQL(
        "SELECT j.{id} AS job_id, s.chunk_no, s.last_error, s.attempts,"
        " (j.{embedding} IS NOT NULL AND s.model_id = %(model_id)s"
        "  AND s.embedded_version = s.text_version) AS fresh,"
        " (s.changed_at > now() - make_interval(mins => %(grace_minutes)s)"
        "  AND s.last_error IS NULL) AS young,"
        " j.{embedding} IS NOT NULL AS has_vector "
        "FROM {jobs} j LEFT JOIN {job_state} s ON s.job_id = j.{id} WHERE {eligible}"
    ).format(
        id=names.id, embedding=names.embedding, jobs=names.jobs, job_state=names.state("job_state"), eligible=eligible
    )


def in_chunks(names: Names) -> sql.Composed:
    return sql.SQL("chunk_no IN (SELECT chunk_no FROM {} WHERE chunk_key = ANY(%(chunk_keys)s))").format(
        names.state("chunks")
    )


def coverage(names: Names, eligible_column: str | None, *, chunks_only: bool = False) -> sql.Composed:
    """Counts over the eligible jobs (with ``chunks_only``, those of the chunks
    ``%(chunk_keys)s``): eligible, fresh, pending, stale, missing, failed."""
    return sql.SQL(
        "SELECT count(*),"
        " count(*) FILTER (WHERE fresh),"
        " count(*) FILTER (WHERE NOT fresh AND young IS TRUE),"
        " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND NOT has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND last_error IS NOT NULL) "
        "FROM ({status}) AS status WHERE {where}"
    ).format(status=job_status(names, eligible_column), where=in_chunks(names) if chunks_only else sql.SQL("TRUE"))


def problem_jobs(names: Names, eligible_column: str | None, *, chunks_only: bool) -> sql.Composed:
    """Eligible jobs that are neither fresh nor pending, with their errors (for check metadata);
    with ``chunks_only``, only those of the chunks ``%(chunk_keys)s``, pending ones included."""
    if chunks_only:
        where = sql.SQL("NOT fresh AND {}").format(in_chunks(names))
    else:
        where = sql.SQL("NOT fresh AND young IS NOT TRUE")
    return sql.SQL(
        "SELECT job_id::text, has_vector, attempts, last_error FROM ({status}) AS status "
        "WHERE {where} ORDER BY last_error IS NULL, job_id LIMIT %(limit)s"
    ).format(status=job_status(names, eligible_column), where=where)


def vector_sanity(names: Names) -> sql.Composed:
    """Vectors whose length is not 1 (the pipeline writes normalized vectors; pgvector itself
    refuses NaN and infinite values and enforces the column's dimension)."""
    return sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE abs(vector_norm({e}) - 1) > %(tolerance)s), "
        "(array_agg({id}::text ORDER BY {id}) FILTER (WHERE abs(vector_norm({e}) - 1) > %(tolerance)s))[1:20] "
        "FROM {jobs} WHERE {e} IS NOT NULL"
    ).format(e=names.embedding, id=names.id, jobs=names.jobs)


def requeue_lost_vectors(names: Names) -> sql.Composed:
    """Jobs recorded as embedded whose vector is gone (set to NULL behind the pipeline's back):
    mark them dirty so the sensor embeds them again."""
    return sql.SQL(
        "UPDATE {job_state} AS s SET text_version = s.text_version + 1, changed_at = now() "
        "FROM {jobs} j WHERE j.{id} = s.job_id AND j.{embedding} IS NULL "
        "AND s.embedded_version = s.text_version"
    ).format(job_state=names.state("job_state"), jobs=names.jobs, id=names.id, embedding=names.embedding)


class CoverageStore(StoreBase):
    def _check_parameters(self, model_id: str, **extra: Any) -> dict[str, Any]:
        return {"model_id": model_id, "grace_minutes": self.settings.grace_minutes, **extra}

    def coverage(self, model_id: str, chunk_keys: Sequence[str] | None = None) -> Coverage:
        """Freshness of every eligible job (``JOBPING_ELIGIBLE_COLUMN``, grace period applied),
        or with ``chunk_keys`` of those chunks' jobs."""
        statement = coverage(self.names(), self.settings.eligible_column, chunks_only=chunk_keys is not None)
        with self.connect(autocommit=True, vectors=False) as connection, connection.transaction():
            connection.execute(COVERAGE_WORK_MEM)
            row = connection.execute(
                statement, self._check_parameters(model_id, chunk_keys=list(chunk_keys or []))
            ).fetchone()
        return Coverage(*row)

    def problem_jobs(self, model_id: str, chunk_keys: Sequence[str] | None = None, limit: int = 50) -> list[ProblemJob]:
        """Up to ``limit`` eligible jobs without a fresh vector, failed ones first; with
        ``chunk_keys``, only those chunks and pending jobs included."""
        statement = problem_jobs(self.names(), self.settings.eligible_column, chunks_only=chunk_keys is not None)
        parameters = self._check_parameters(model_id, limit=limit, chunk_keys=list(chunk_keys or []))
        with self.connect(autocommit=True, vectors=False) as connection:
            return [ProblemJob(*row) for row in connection.execute(statement, parameters)]

    def chunk_freshness(self, model_id: str, chunk_keys: Sequence[str]) -> tuple[int, int, int]:
        """(eligible, fresh, failed) job counts of these chunks."""
        counts = self.coverage(model_id, chunk_keys)
        return counts.eligible, counts.fresh, counts.failed

    def vector_sanity(self, tolerance: float = 1e-3) -> tuple[int, int, list[str]]:
        """(vectors, vectors whose norm is off by more than ``tolerance``, first such ids)."""
        with self.connect(autocommit=True) as connection:
            total, bad, ids = connection.execute(vector_sanity(self.names()), {"tolerance": tolerance}).fetchone()
        return total, bad, list(ids or [])

    def requeue_lost_vectors(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(requeue_lost_vectors(self.names())).rowcount
