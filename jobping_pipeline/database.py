"""The jobs database: connecting, checking the table, setup, the chunk registry and the writes.

Plain Python over psycopg 3, testable without Dagster. The statements themselves live in
:mod:`jobping_pipeline.sql`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from jobping_pipeline import sql as statements
from jobping_pipeline.demo_data import DemoJob
from jobping_pipeline.embedded_postgres import JOBS_DATABASE, embedded_server_url
from jobping_pipeline.settings import ConfigError, Settings, redact_url

logger = logging.getLogger(__name__)

ID_TYPES = ("smallint", "integer", "bigint", "uuid", "text", "character varying")


class DatabaseUnavailable(RuntimeError):
    """The jobs database cannot be reached; the message never contains a password."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): "text", "text[]", "vector(384)", ...
    type_name: str  # pg_type.typname: "text", "_text", "vector", ...
    not_null: bool


@dataclass(frozen=True)
class JobsTable:
    """What the live jobs table looks like, checked against the settings."""

    id_type: str
    text_columns: tuple[str, ...]
    embedding_dimensions: int | None  # None: the column does not exist yet
    columns: dict[str, Column]


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


@dataclass
class ChunkRow:
    job_id: Any
    text_version: int
    text_hash: bytes | None
    model_id: str | None
    embedded_version: int | None
    attempts: int
    exists: bool
    has_embedding: bool
    values: tuple[Any, ...]


def _vector_dimensions(column: Column) -> int | None:
    match = re.fullmatch(r"vector\((\d+)\)", column.type)
    return int(match.group(1)) if match else None


class JobStore:
    """One configured jobs table and the pipeline's state schema next to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._url: str | None = None
        self._table: JobsTable | None = None
        self._replica_role_warned = False

    # --- connections --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.settings.database_url or embedded_server_url(
                self.settings.data_dir, JOBS_DATABASE
            )
        return self._url

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def connect(self, *, autocommit: bool = False, vectors: bool = True) -> psycopg.Connection:
        """A new connection; pgvector types registered when the extension exists."""
        try:
            connection = psycopg.connect(self.url, autocommit=autocommit, connect_timeout=10)
        except psycopg.OperationalError as error:
            reason = redact_url(str(error).strip().splitlines()[0] if str(error).strip() else "")
            raise DatabaseUnavailable(
                f"cannot connect to JOBPING_DATABASE_URL={self.display_url}: {reason}"
            ) from None
        if vectors:
            try:
                register_vector(connection)
            except psycopg.ProgrammingError:
                pass  # no vector extension yet: only setup runs before it exists
            if not autocommit:
                connection.rollback()
        return connection

    # --- the jobs table -----------------------------------------------------------------------

    def inspect(self, connection: psycopg.Connection | None = None, *, refresh: bool = False) -> JobsTable:
        """Read the jobs table's columns and check every configured name against them."""
        if self._table is not None and not refresh:
            return self._table
        settings = self.settings
        own = connection is None
        connection = connection or self.connect(autocommit=True, vectors=False)
        try:
            rows = connection.execute(
                statements.TABLE_COLUMNS, (settings.jobs_table.schema, settings.jobs_table.name)
            ).fetchall()
        finally:
            if own:
                connection.close()
        if not rows:
            raise ConfigError(
                f"JOBPING_JOBS_TABLE={settings.jobs_table}: no such table in {self.display_url} "
                "(create it, or load demo data with `jobping-pipeline demo-data`)"
            )
        columns = {name: Column(name, type_, type_name, not_null) for name, type_, type_name, _, not_null in rows}
        id_column = columns.get(settings.id_column)
        if id_column is None:
            raise ConfigError(
                f"JOBPING_ID_COLUMN={settings.id_column!r}: table {settings.jobs_table} has no such column"
            )
        if id_column.type not in ID_TYPES:
            raise ConfigError(
                f"JOBPING_ID_COLUMN={settings.id_column!r} has type {id_column.type}; "
                f"supported: {', '.join(ID_TYPES)}"
            )
        if settings.text_columns_explicit:
            missing = [name for name in settings.text_columns if name not in columns]
            if missing:
                raise ConfigError(
                    f"JOBPING_TEXT_COLUMNS names {', '.join(missing)}, which table "
                    f"{settings.jobs_table} does not have (it has: {', '.join(columns)})"
                )
            text_columns = settings.text_columns
        else:
            text_columns = tuple(name for name in settings.text_columns if name in columns)
            if not text_columns:
                raise ConfigError(
                    f"table {settings.jobs_table} has none of the default text columns "
                    f"({', '.join(settings.text_columns)}); set JOBPING_TEXT_COLUMNS"
                )
        embedding = columns.get(settings.embedding_column)
        dimensions = None
        if embedding is not None:
            dimensions = _vector_dimensions(embedding)
            if dimensions is None:
                raise ConfigError(
                    f"JOBPING_EMBEDDING_COLUMN={settings.embedding_column!r} has type {embedding.type}; "
                    "it must be a pgvector column with a fixed dimension, e.g. vector(384)"
                )
        self._table = JobsTable(
            id_type=id_column.type,
            text_columns=text_columns,
            embedding_dimensions=dimensions,
            columns=columns,
        )
        return self._table

    def statements(self) -> statements.JobsSql:
        table = self.inspect()
        return statements.JobsSql(
            jobs_table=self.settings.jobs_table,
            id_column=self.settings.id_column,
            embedding_column=self.settings.embedding_column,
            text_columns=table.text_columns,
            state_schema=self.settings.state_schema,
            id_type=table.id_type,
        )

    def check_dimensions(self, dimensions: int) -> None:
        """Refuse a model whose vectors do not fit the embedding column."""
        existing = self.inspect().embedding_dimensions
        if existing is not None and existing != dimensions:
            column = self.settings.embedding_column
            raise ConfigError(
                f"JOBPING_MODEL={self.settings.model_name!r} makes {dimensions}-dimensional vectors but "
                f"{self.settings.jobs_table}.{column} is vector({existing}). Configure a "
                f"{existing}-dimensional model, or move the column to this model with "
                "`jobping-pipeline prepare-model-change --yes`, then `jobping-pipeline backfill`."
            )
        if existing is None:
            raise ConfigError(
                f"{self.settings.jobs_table}.{self.settings.embedding_column} does not exist: "
                "run `jobping-pipeline setup` first"
            )

    # --- setup --------------------------------------------------------------------------------

    def setup(self, dimensions: int) -> list[str]:
        """Idempotent: the vector extension, the embedding column, the state schema, the triggers,
        and every existing job queued for a chunk. Returns what it changed, in words."""
        changes: list[str] = []
        with self.connect(vectors=False) as connection:
            table = self.inspect(connection, refresh=True)
            if table.embedding_dimensions is not None and table.embedding_dimensions != dimensions:
                self.check_dimensions(dimensions)
            version = connection.execute(statements.VECTOR_EXTENSION_VERSION).fetchone()
            if version is None:
                connection.execute(statements.CREATE_VECTOR_EXTENSION)
                changes.append("created extension vector")
            sql = self.statements()
            if table.embedding_dimensions is None:
                connection.execute(sql.add_embedding_column(dimensions))
                changes.append(
                    f"added column {self.settings.embedding_column} vector({dimensions}) "
                    f"to {self.settings.jobs_table}"
                )
            state_schema = self.settings.state_schema
            state_columns = connection.execute(
                statements.TABLE_COLUMNS, (state_schema, "job_state")
            ).fetchall()
            if not state_columns:
                changes.append(f"created schema {state_schema} (chunk registry, per-job state)")
            else:
                state_id_type = next(row[1] for row in state_columns if row[0] == "job_id")
                if state_id_type != table.id_type:
                    raise ConfigError(
                        f"{state_schema}.job_state keys jobs by {state_id_type}, but "
                        f"{self.settings.jobs_table}.{self.settings.id_column} is {table.id_type}: "
                        f"DROP SCHEMA {state_schema} CASCADE, then run setup and a backfill"
                    )
            schema_statement, *table_statements = sql.create_state_schema()
            if connection.execute(statements.SCHEMA_EXISTS, (state_schema,)).fetchone() is None:
                connection.execute(schema_statement)
            for statement in table_statements:
                connection.execute(statement)
            meta = dict(connection.execute(sql.read_meta()).fetchall())
            # Triggers are (re)installed only when missing or different, so a role that owns only
            # the state schema can run setup (and backfills) once an owner has set the table up.
            capture = [*sql.install_change_capture(), sql.search_function(dimensions)]
            signature = hashlib.sha256(
                "\n".join(statement.as_string(connection) for statement in capture).encode()
            ).hexdigest()
            installed = connection.execute(
                statements.CAPTURE_TRIGGER_COUNT,
                (self.settings.jobs_table.schema, self.settings.jobs_table.name),
            ).fetchone()[0]
            if meta.get("change_capture") != signature or installed != len(statements.CAPTURE_OPERATIONS):
                for statement in capture:
                    connection.execute(statement)
                connection.execute(sql.write_meta(), ("change_capture", signature))
                changes.append(
                    "installed change-capture triggers on the jobs table and "
                    f"{state_schema}.match_jobs_by_embedding()"
                )
            text_columns = ",".join(table.text_columns)
            recorded_columns = meta.get("text_columns")
            if recorded_columns is not None and recorded_columns != text_columns:
                marked = connection.execute(sql.mark_every_job_dirty()).rowcount
                changes.append(
                    f"text columns changed from {recorded_columns} to {text_columns}: trigger "
                    f"re-installed, {marked} jobs marked for re-embedding"
                )
            if recorded_columns != text_columns:
                connection.execute(sql.write_meta(), ("text_columns", text_columns))
            if meta.get("embedding_dimensions") != str(dimensions):
                connection.execute(sql.write_meta(), ("embedding_dimensions", str(dimensions)))
            queued = connection.execute(sql.enqueue_unregistered_jobs()).rowcount
            if queued:
                changes.append(f"queued {queued} jobs for chunking")
            connection.commit()
        self.inspect(refresh=True)
        return changes

    # --- chunk registry -----------------------------------------------------------------------

    def register_chunks(self, *, scan_table: bool) -> list[str]:
        """Put queued jobs into new chunks; returns the new chunk keys. ``scan_table`` first
        queues every job without state (a full scan: for setup and backfill, not sensor ticks)."""
        sql = self.statements()
        with self.connect(vectors=False) as connection:
            connection.execute(statements.REGISTER_LOCK, (statements.ADVISORY_LOCK_REGISTER,))
            if scan_table:
                connection.execute(sql.enqueue_unregistered_jobs())
            (last,) = connection.execute(sql.last_chunk_no()).fetchone()
            connection.execute(sql.assign_chunks(), {"chunk_size": self.settings.chunk_size})
            keys = [key for (key,) in connection.execute(sql.chunk_keys_after(), (last,))]
            connection.commit()
        return keys

    # --- vector indexes during big backfills ----------------------------------------------------

    def vector_indexes(self) -> list[tuple[str, str, str]]:
        """(name, definition, method) of every HNSW or IVFFlat index on the embedding column."""
        name = self.settings.jobs_table
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(
                connection.execute(
                    statements.VECTOR_INDEXES, (name.schema, name.name, self.settings.embedding_column)
                )
            )

    def defer_vector_indexes(self) -> list[str]:
        """Drop the vector indexes on the embedding column, recording their definitions first so
        that :meth:`restore_vector_indexes` (at the end of this or, if this process dies, the next
        ``jobping-pipeline backfill``) builds them again. Returns the names dropped."""
        sql = self.statements()
        dropped = []
        with self.connect(vectors=False) as connection:
            for index_name, definition, _ in self.vector_indexes():
                connection.execute(sql.write_meta(), (statements.DEFERRED_INDEX_PREFIX + index_name, definition))
                connection.execute(sql.drop_index(index_name))
                dropped.append(index_name)
            connection.commit()
        return dropped

    def restore_vector_indexes(self, connection: psycopg.Connection | None = None) -> list[str]:
        """Build every index that :meth:`defer_vector_indexes` dropped and forget its record."""
        sql = self.statements()
        own = connection is None
        connection = connection or self.connect(vectors=False)
        restored = []
        try:
            rows = connection.execute(sql.read_meta()).fetchall()
            for key, definition in rows:
                if not key.startswith(statements.DEFERRED_INDEX_PREFIX):
                    continue
                index_name = key[len(statements.DEFERRED_INDEX_PREFIX) :]
                exists = connection.execute(
                    statements.INDEX_EXISTS, (self.settings.jobs_table.schema, index_name)
                ).fetchone()
                if not exists:
                    connection.execute(definition)  # pg_get_indexdef() output, written by Postgres
                connection.execute(sql.delete_meta(), (key,))
                restored.append(index_name)
            if own:
                connection.commit()
        finally:
            if own:
                connection.close()
        return restored

    @contextlib.contextmanager
    def chunk_lock(self, connection: psycopg.Connection, chunk_key: str):
        """Hold the chunk's advisory lock: a second run of the same chunk waits, then finds the
        work done instead of doing it twice."""
        sql = self.statements()
        connection.execute(sql.chunk_lock(), (statements.ADVISORY_LOCK_CHUNK, chunk_key))
        connection.commit()
        try:
            yield
        finally:
            if not connection.closed:
                connection.rollback()
                connection.execute(sql.chunk_unlock(), (statements.ADVISORY_LOCK_CHUNK, chunk_key))
                connection.commit()

    def create_hnsw_index(self) -> tuple[str, float] | None:
        """Build an HNSW index (cosine) on the embedding column unless one exists; returns its
        name and build seconds, or None when there already was a vector index."""
        if self.vector_indexes():
            return None
        sql = self.statements()
        started = time.perf_counter()
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(sql.create_hnsw_index())
        return sql.hnsw_index_name(), time.perf_counter() - started

    def nearest_jobs(self, query_vector, limit: int) -> list[tuple]:
        """(id, similarity, display columns...) of the ``limit`` nearest jobs."""
        display = self.inspect().text_columns[:3]
        with self.connect(autocommit=True) as connection:
            return list(
                connection.execute(
                    self.statements().nearest_jobs(display, self.settings.eligible_column),
                    {"query": query_vector, "limit": limit},
                )
            )

    def change_embedding_dimensions(self, dimensions: int) -> list[str]:
        """For a model of another dimension: drop the embedding column (and so its vectors and
        indexes, whose definitions are kept for the end of the next backfill) and add it back as
        vector(dimensions). Every job is then stale by model id; the backfill re-embeds them."""
        sql = self.statements()
        changes = []
        deferred = self.defer_vector_indexes()
        with self.connect(vectors=False) as connection:
            connection.execute(sql.drop_embedding_column())
            connection.execute(sql.add_embedding_column(dimensions))
            connection.execute(sql.write_meta(), ("embedding_dimensions", str(dimensions)))
            connection.execute(sql.search_function_drop())
            connection.execute(sql.delete_meta(), ("change_capture",))
            connection.commit()
        changes.append(
            f"{self.settings.jobs_table}.{self.settings.embedding_column} is now vector({dimensions}); "
            "its old vectors are gone"
        )
        if deferred:
            changes.append(f"vector indexes {', '.join(deferred)} will be rebuilt at the end of the backfill")
        self.inspect(refresh=True)
        changes += self.setup(dimensions)
        return changes

    def existing_job_count(self) -> int | None:
        """Rows in the jobs table, or None when it does not exist."""
        with self.connect(autocommit=True, vectors=False) as connection:
            name = self.settings.jobs_table
            if connection.execute(statements.TABLE_EXISTS, (name.schema, name.name)).fetchone() is None:
                return None
            return connection.execute(statements.count_rows(name)).fetchone()[0]

    def chunk_keys(self) -> list[str]:
        with self.connect(autocommit=True, vectors=False) as connection:
            return [key for (key,) in connection.execute(self.statements().all_chunk_keys())]

    def chunk_exists(self, chunk_key: str) -> bool:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(self.statements().chunk_exists(), (chunk_key,)).fetchone() is not None

    def chunks_with_pending_work(self, model_id: str) -> list[tuple[str, int]]:
        with self.connect(autocommit=True, vectors=False) as connection:
            return [
                (key, count)
                for key, count in connection.execute(
                    self.statements().chunks_with_pending_work(), {"model_id": model_id}
                )
            ]

    def chunk_progress(self, model_id: str) -> list[tuple[str, int, int, int]]:
        """(chunk key, jobs, jobs to do, failed) for every chunk."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(connection.execute(self.statements().chunk_progress(), {"model_id": model_id}))

    def unassigned_count(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(self.statements().unassigned_count()).fetchone()[0]

    def _check_parameters(self, model_id: str, **extra: Any) -> dict[str, Any]:
        return {"model_id": model_id, "grace_minutes": self.settings.grace_minutes, **extra}

    def coverage(self, model_id: str) -> Coverage:
        """Freshness of every eligible job (``JOBPING_ELIGIBLE_COLUMN``, grace period applied)."""
        with self.connect(autocommit=True, vectors=False) as connection, connection.transaction():
            connection.execute(statements.COVERAGE_WORK_MEM)
            row = connection.execute(
                self.statements().coverage(self.settings.eligible_column), self._check_parameters(model_id)
            ).fetchone()
        return Coverage(*row)

    def problem_jobs(
        self, model_id: str, chunk_keys: Sequence[str] | None = None, limit: int = 50
    ) -> list[ProblemJob]:
        """Up to ``limit`` eligible jobs without a fresh vector, failed ones first; with
        ``chunk_keys``, only those chunks and pending jobs included."""
        statement = self.statements().problem_jobs(
            self.settings.eligible_column, in_chunks=chunk_keys is not None
        )
        parameters = self._check_parameters(model_id, limit=limit, chunk_keys=list(chunk_keys or []))
        with self.connect(autocommit=True, vectors=False) as connection:
            return [ProblemJob(*row) for row in connection.execute(statement, parameters)]

    def chunk_freshness(self, model_id: str, chunk_keys: Sequence[str]) -> tuple[int, int, int]:
        """(eligible, fresh, failed) job counts of these chunks."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(
                self.statements().chunk_freshness(self.settings.eligible_column),
                self._check_parameters(model_id, chunk_keys=list(chunk_keys)),
            ).fetchone()

    def vector_sanity(self, tolerance: float = 1e-3) -> tuple[int, int, list[str]]:
        """(vectors, vectors whose norm is off by more than ``tolerance``, first such ids)."""
        with self.connect(autocommit=True) as connection:
            total, bad, ids = connection.execute(
                self.statements().vector_sanity(), {"tolerance": tolerance}
            ).fetchone()
        return total, bad, list(ids or [])

    def meta(self) -> dict[str, str]:
        with self.connect(autocommit=True, vectors=False) as connection:
            try:
                return dict(connection.execute(self.statements().read_meta()).fetchall())
            except psycopg.errors.UndefinedTable:
                return {}

    def requeue_lost_vectors(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(self.statements().requeue_lost_vectors()).rowcount

    def dirty_chunks(self) -> list[tuple[str, int]]:
        """Chunks with new or edited jobs that have attempts left (cheap: a partial index)."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return list(
                connection.execute(
                    self.statements().dirty_chunks(), {"max_attempts": self.settings.max_attempts}
                )
            )

    # --- one chunk ----------------------------------------------------------------------------

    def read_chunk(self, connection: psycopg.Connection, chunk_key: str) -> list[ChunkRow]:
        rows = connection.execute(self.statements().read_chunk(), {"chunk_key": chunk_key}).fetchall()
        return [
            ChunkRow(
                job_id=row[0],
                text_version=row[1],
                text_hash=bytes(row[2]) if row[2] is not None else None,
                model_id=row[3],
                embedded_version=row[4],
                attempts=row[5],
                exists=row[6],
                has_embedding=row[7],
                values=tuple(row[8:]),
            )
            for row in rows
        ]

    def writer_connection(self) -> psycopg.Connection:
        """A connection for embedding writes. It asks for ``session_replication_role = replica``
        so that the table's own triggers (an ``updated_at`` bump, say) do not fire on a write of
        the embedding alone; without that privilege it warns once and writes anyway."""
        connection = self.connect()
        try:
            connection.execute(statements.SET_REPLICA_ROLE)
            connection.commit()
        except psycopg.errors.InsufficientPrivilege:
            connection.rollback()
            if not self._replica_role_warned:
                self._replica_role_warned = True
                logger.warning(
                    "cannot SET session_replication_role: triggers on %s will fire on embedding "
                    "writes. GRANT SET ON PARAMETER session_replication_role TO <role> to prevent it.",
                    self.settings.jobs_table,
                )
        return connection

    def write_batch(
        self,
        connection: psycopg.Connection,
        job_ids: Sequence[Any],
        vectors: np.ndarray,
        hashes: Sequence[bytes],
        versions: Sequence[int],
        model_id: str,
    ) -> list[Any]:
        """Write one batch of vectors and its state in one transaction; returns the ids that were
        written (a job deleted meanwhile is missing from it)."""
        sql = self.statements()
        with connection.transaction():
            written = [
                row[0]
                for row in connection.execute(sql.write_embeddings(), (list(job_ids), list(vectors)))
            ]
            if written:
                written_set = set(written)
                keep = [index for index, job_id in enumerate(job_ids) if job_id in written_set]
                connection.execute(
                    sql.record_embedded(),
                    (
                        model_id,
                        [job_ids[index] for index in keep],
                        [hashes[index] for index in keep],
                        [versions[index] for index in keep],
                    ),
                )
        return written

    def record_unchanged(
        self,
        connection: psycopg.Connection,
        job_ids: Sequence[Any],
        hashes: Sequence[bytes],
        versions: Sequence[int],
        model_id: str,
    ) -> None:
        """Jobs whose text and model match their stored vector: only their state moves on."""
        if job_ids:
            with connection.transaction():
                connection.execute(
                    self.statements().record_embedded(),
                    (model_id, list(job_ids), list(hashes), list(versions)),
                )

    def record_failure(self, job_ids: Sequence[Any], error: str) -> None:
        """Count a failed attempt for these jobs, on a fresh connection (the failing one may be broken)."""
        if not job_ids:
            return
        with self.connect() as connection:
            connection.execute(self.statements().record_failure(), (error[:2000], list(job_ids)))
            connection.commit()

    def forget_jobs(self, connection: psycopg.Connection, job_ids: Sequence[Any]) -> None:
        if job_ids:
            with connection.transaction():
                connection.execute(self.statements().forget_jobs(), (list(job_ids),))


def load_demo_jobs(store: JobStore, jobs: Iterable[DemoJob], *, id_type: str = "integer") -> int:
    """Create jobping's jobs table when absent and COPY the jobs into it; returns the count."""
    settings = store.settings
    count = 0
    with store.connect(vectors=False) as connection:
        exists = connection.execute(
            statements.TABLE_EXISTS, (settings.jobs_table.schema, settings.jobs_table.name)
        ).fetchone()
        if not exists:
            for statement in statements.create_demo_jobs_table(settings.jobs_table, id_type):
                connection.execute(statement)
        with connection.cursor().copy(statements.copy_demo_jobs(settings.jobs_table)) as copy:
            for job in jobs:
                copy.write_row(
                    (
                        job.title,
                        job.company,
                        job.location,
                        job.description,
                        job.categories,
                        job.is_active,
                        job.created_at,
                        job.created_at,
                    )
                )
                count += 1
        connection.commit()
    store.inspect(refresh=True)
    return count
