"""Coverage and health: how many eligible jobs have a fresh vector, which do not and why, and
whether the stored vectors are sane. Counted two ways: from the jobs table itself, joined to the
state (the deep count, which also finds jobs the triggers never saw), and from the state alone
(the fast count, one scan of narrow rows). The states and their meaning are defined in
``jobping_pipeline/store/state.md``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import psycopg
from psycopg import sql

from jobping_pipeline.settings import ConfigError

from jobping_pipeline.store.catalog import Names, StoreBase, not_up_to_date, read_meta, young
from jobping_pipeline.store.setup import enqueue_unregistered_jobs, vector_gone

# The coverage join hashes a million small state rows; with the default 4 MB it spills to disk
# and takes twice as long (3.9 s vs 1.7 s at 1M jobs, benchmarks/throughput.py --scale).
COVERAGE_WORK_MEM = sql.SQL("SET LOCAL work_mem = '64MB'")


@dataclass(frozen=True)
class Coverage:
    """Counts over the eligible jobs, from the jobs table itself (state.md has the states).
    ``pending`` jobs are not fresh: shown, never counted as done. ``hidden`` counts jobs the
    pipeline knows of but this role cannot see (row-level security): they make coverage
    unprovable, never 100%."""

    eligible: int
    fresh: int
    pending: int
    stale: int
    missing: int
    failed: int
    without_state: int = 0
    hidden: int = 0

    @property
    def complete(self) -> bool:
        """Every eligible job is fresh: decided by counts, never by a rounded percentage."""
        return self.fresh == self.eligible and self.hidden == 0

    @property
    def percent(self) -> float:
        """Fresh over eligible jobs, hidden ones included; 100.0 only when complete."""
        due = self.eligible + self.hidden
        if self.complete:
            return 100.0
        return min(100.0 * self.fresh / due, 99.99) if due else 0.0

    @property
    def only_pending(self) -> bool:
        """Not complete, but only because of the application's own recent inserts and edits."""
        return not self.complete and self.fresh + self.pending == self.eligible and self.hidden == 0


@dataclass(frozen=True)
class ProblemJob:
    job_id: str
    has_vector: bool
    attempts: int
    last_error: str | None

    def describe(self) -> str:
        if self.last_error and not self.attempts:
            return f"{self.job_id}: {self.last_error}"  # found by the vector audit, queued
        if self.last_error:
            return f"{self.job_id}: failed {self.attempts}x: {self.last_error}"
        return f"{self.job_id}: {'stale vector' if self.has_vector else 'no vector'}"


def job_status(names: Names, eligible_column: str | None) -> sql.Composed:
    """One row per eligible job with its freshness classified (shared by every check query).
    fresh: embedded from its current text by %(model_id)s; young: an application insert or edit
    within the grace period and not failed (so pending if not fresh); stale: has a vector, from
    another model or older text; missing: no vector, or no state row at all."""
    eligible = sql.SQL("j.{} IS TRUE").format(sql.Identifier(eligible_column)) if eligible_column else sql.SQL("TRUE")
    return sql.SQL(
        "SELECT j.{id} AS job_id, s.chunk_no, s.last_error, s.attempts, s.job_id IS NULL AS without_state,"
        " coalesce(j.{embedding} IS NOT NULL AND s.model_id = %(model_id)s"
        "  AND s.embedded_version = s.text_version, false) AS fresh,"
        " {young} AS young,"
        " j.{embedding} IS NOT NULL AS has_vector "
        "FROM {jobs} j LEFT JOIN {job_state} s ON s.job_id = j.{id} WHERE {eligible}"
    ).format(
        id=names.id,
        embedding=names.embedding,
        young=young("s"),
        jobs=names.jobs,
        job_state=names.state("job_state"),
        eligible=eligible,
    )


def state_coverage(names: Names) -> sql.Composed:
    """The same counts as :func:`coverage`, from the state alone: one scan of the narrow
    ``job_state`` rows instead of a join with the jobs table. True as long as every change to
    the jobs table goes through its triggers, which mirror eligibility and vector removal into
    the state (``embedded_version`` is NULL when the job has no vector); the deep check
    (:func:`coverage`) proves it from the table itself."""
    return sql.SQL(
        "SELECT count(*), count(*) FILTER (WHERE fresh),"
        " count(*) FILTER (WHERE NOT fresh AND young),"
        " count(*) FILTER (WHERE NOT fresh AND NOT young AND has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND NOT young AND NOT has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND last_error IS NOT NULL), 0 "
        "FROM (SELECT NOT {not_up_to_date} AS fresh, {young} AS young,"
        "  s.embedded_version IS NOT NULL AS has_vector, s.last_error FROM {job_state} s WHERE s.eligible) AS status"
    ).format(not_up_to_date=not_up_to_date("s"), young=young("s"), job_state=names.state("job_state"))


def state_problem_jobs(names: Names) -> sql.Composed:
    """:func:`problem_jobs` from the state alone (the not-fresh jobs sit in the partial index
    ``job_state_dirty``, unless the model changed)."""
    return sql.SQL(
        "SELECT s.job_id::text, s.embedded_version IS NOT NULL, s.attempts, s.last_error FROM {job_state} s "
        "WHERE s.eligible AND {not_up_to_date} AND NOT {young} "
        "ORDER BY s.last_error IS NULL, s.job_id LIMIT %(limit)s"
    ).format(not_up_to_date=not_up_to_date("s"), young=young("s"), job_state=names.state("job_state"))


def job_states(names: Names, eligible_column: str | None) -> sql.Composed:
    """The state (state.md) of each eligible job among ``%(job_ids)s``."""
    return sql.SQL(
        "SELECT job_id, CASE WHEN fresh THEN 'fresh' WHEN young THEN 'pending'"
        " WHEN has_vector THEN 'stale' ELSE 'missing' END FROM ({status}) AS status WHERE job_id = ANY(%(job_ids)s)"
    ).format(status=job_status(names, eligible_column))


def hidden_jobs(names: Names) -> sql.Composed:
    """State rows of jobs this role cannot see (only asked when row-level security is active:
    otherwise a job that cannot be seen is gone)."""
    return sql.SQL(
        "SELECT count(*) FROM {job_state} s WHERE NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.{id} = s.job_id)"
    ).format(job_state=names.state("job_state"), jobs=names.jobs, id=names.id)


def in_chunks(names: Names) -> sql.Composed:
    return sql.SQL("chunk_no IN (SELECT chunk_no FROM {} WHERE chunk_key = ANY(%(chunk_keys)s))").format(
        names.state("chunks")
    )


def coverage(names: Names, eligible_column: str | None, *, chunks_only: bool = False) -> sql.Composed:
    """Counts over the eligible jobs (with ``chunks_only``, those of the chunks
    ``%(chunk_keys)s``): eligible, fresh, pending, stale, missing, failed, without state."""
    return sql.SQL(
        "SELECT count(*),"
        " count(*) FILTER (WHERE fresh),"
        " count(*) FILTER (WHERE NOT fresh AND young IS TRUE),"
        " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND young IS NOT TRUE AND NOT has_vector),"
        " count(*) FILTER (WHERE NOT fresh AND last_error IS NOT NULL),"
        " count(*) FILTER (WHERE without_state) "
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
        "SELECT job_id::text, has_vector, coalesce(attempts, 0), last_error FROM ({status}) AS status "
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
        "UPDATE {job_state} AS s SET {vector_gone} "
        "FROM {jobs} j WHERE j.{id} = s.job_id AND j.{embedding} IS NULL "
        "AND s.embedded_version = s.text_version"
    ).format(
        job_state=names.state("job_state"),
        jobs=names.jobs,
        id=names.id,
        embedding=names.embedding,
        vector_gone=vector_gone(names),
    )


class CoverageStore(StoreBase):
    def _check_parameters(self, model_id: str, **extra: Any) -> dict[str, Any]:
        return {"model_id": model_id, "grace_minutes": self.settings.grace_minutes, **extra}

    def check_text_columns(self, meta: dict[str, str] | None = None) -> None:
        """Refuse to embed or count while the state's vectors were made from other text columns
        than JOBPING_TEXT_COLUMNS now names: until setup has marked every job due, each of them
        would count as fresh. (A changed JOBPING_TEXT_TEMPLATE changes the model id instead.)"""
        if meta is None:
            with self.connect(autocommit=True, vectors=False) as connection:
                try:
                    meta = dict(connection.execute(read_meta(self.names())).fetchall())
                except psycopg.errors.UndefinedTable:
                    return  # never set up: the counts and the run say so themselves
        recorded, configured = meta.get("text_columns"), ",".join(self.inspect().text_columns)
        if recorded is not None and recorded != configured:
            raise ConfigError(
                f"JOBPING_TEXT_COLUMNS is now {configured}, but the vectors in {self.settings.embedding_column} were "
                f"made from {recorded}: run `jobping-pipeline setup` (the sensor's next tick does it too), which marks "
                "every job due; until then no job counts as fresh"
            )

    def coverage(self, model_id: str, chunk_keys: Sequence[str] | None = None) -> Coverage:
        """Freshness of every eligible job (``JOBPING_ELIGIBLE_COLUMN``), or with ``chunk_keys``
        of those chunks' jobs; counts jobs hidden by row-level security too."""
        names = self.names()
        statement = coverage(names, self.settings.eligible_column, chunks_only=chunk_keys is not None)
        with self.connect(autocommit=True, vectors=False) as connection, connection.transaction():
            connection.execute(COVERAGE_WORK_MEM)
            try:
                if chunk_keys is None:
                    self.check_text_columns(dict(connection.execute(read_meta(names)).fetchall()))
                row = connection.execute(
                    statement, self._check_parameters(model_id, chunk_keys=list(chunk_keys or []))
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                raise self._not_set_up() from None
            hidden = 0
            if chunk_keys is None and self.row_security_active(connection):
                hidden = connection.execute(hidden_jobs(names)).fetchone()[0]
        return Coverage(*row, hidden=hidden)

    def state_coverage(self, model_id: str) -> Coverage:
        """Freshness of every eligible job as the pipeline's state records it (fast: no join with
        the jobs table; see :func:`state_coverage` for what it rests on). Until setup has mirrored
        a changed JOBPING_ELIGIBLE_COLUMN into the state, counted from the table instead."""
        names = self.names()
        with self.connect(autocommit=True, vectors=False) as connection:
            try:
                meta = dict(connection.execute(read_meta(names)).fetchall())
                self.check_text_columns(meta)
                row = None
                if meta.get("eligible_column", "") == (self.settings.eligible_column or ""):
                    row = connection.execute(state_coverage(names), self._check_parameters(model_id)).fetchone()
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                # No state schema, or one from before version 3 (no eligibility mirror yet).
                raise self._not_set_up() from None
            if row is None:
                return self.coverage(model_id)
            # Under row-level security the state knows jobs this role cannot see: never complete.
            hidden = connection.execute(hidden_jobs(names)).fetchone()[0] if self.row_security_active(connection) else 0
        return Coverage(*row, hidden=hidden)

    def _not_set_up(self) -> ConfigError:
        return ConfigError(
            f"the pipeline is not set up (or not since an upgrade) in schema {self.settings.state_schema} of "
            f"{self.display_url}: run `jobping-pipeline setup` (or a backfill)"
        )

    def job_states(self, model_id: str, job_ids: Sequence[Any]) -> dict[Any, str]:
        """The state of each of these jobs (absent: not an eligible row of the jobs table)."""
        with self.connect(autocommit=True, vectors=False) as connection:
            rows = connection.execute(
                job_states(self.names(), self.settings.eligible_column),
                self._check_parameters(model_id, job_ids=list(job_ids)),
            )
            return dict(rows.fetchall())

    def queue_jobs_without_state(self) -> int:
        """Give a state row to every job that has none (inserted with triggers bypassed, or
        from a primary-key change before version 2 of the triggers), so the sensor sees it."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(enqueue_unregistered_jobs(self.names())).rowcount

    def problem_jobs(
        self, model_id: str, chunk_keys: Sequence[str] | None = None, limit: int = 50, *, from_state: bool = False
    ) -> list[ProblemJob]:
        """Up to ``limit`` eligible jobs without a fresh vector, failed ones first; with
        ``chunk_keys``, only those chunks and pending jobs included; ``from_state``: as the
        state records them (see :meth:`state_coverage`)."""
        if from_state:
            statement = state_problem_jobs(self.names())
        else:
            statement = problem_jobs(self.names(), self.settings.eligible_column, chunks_only=chunk_keys is not None)
        parameters = self._check_parameters(model_id, limit=limit, chunk_keys=list(chunk_keys or []))
        with self.connect(autocommit=True, vectors=False) as connection:
            return [ProblemJob(*row) for row in connection.execute(statement, parameters)]

    def vector_sanity(self, tolerance: float = 1e-3) -> tuple[int, int, list[str]]:
        """(vectors, vectors whose norm is off by more than ``tolerance``, first such ids)."""
        with self.connect(autocommit=True) as connection:
            total, bad, ids = connection.execute(vector_sanity(self.names()), {"tolerance": tolerance}).fetchone()
        return total, bad, list(ids or [])

    def requeue_lost_vectors(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(requeue_lost_vectors(self.names())).rowcount
