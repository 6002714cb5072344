"""Reading one chunk and writing its vectors: the only writes to the jobs table.

Every write is one set-based ``UPDATE`` of the embedding column (never an INSERT, never an
upsert, never another column), in one transaction with the state it records. The state fields
written here are described in ``jobping_pipeline/store/state.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import psycopg
from psycopg import sql

from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store.catalog import Names, StoreBase, not_up_to_date
from jobping_pipeline.store.setup import VECTOR_WRITE_SETTING, vector_digest

logger = logging.getLogger(__name__)

# SET LOCAL, inside each write's own transaction: it holds through a transaction-mode pooler,
# where a session-level SET would stay on whichever backend ran it.
SET_REPLICA_ROLE = sql.SQL("SET LOCAL session_replication_role = replica")
# Marks this transaction's writes of the embedding column as the pipeline's own: the capture
# trigger (enabled ALWAYS) lets them pass and takes any other vector write for a foreign one.
MARK_VECTOR_WRITE = sql.SQL("SET LOCAL {} = 'on'").format(sql.SQL(VECTOR_WRITE_SETTING))
# The settings a vector recorded as fresh depends on, as the last setup recorded them; held
# FOR SHARE until the write commits, so setup's switch (which locks them first) waits for it.
RECORDED_CONFIGURATION = "SELECT key, value FROM {} WHERE key IN ('text_columns', 'embedding_column') FOR SHARE"


class ConfigurationChanged(ConfigError):
    """Setup recorded another text or embedding column than this run read: nothing was written."""


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
    vector_is_recorded: bool  # the stored vector is the one the pipeline recorded writing
    values: tuple[Any, ...]


def read_chunk(names: Names) -> sql.Composed:
    """State and text of every job of chunk ``%(chunk_key)s`` that is not up to date with
    ``%(model_id)s`` (dirty, or embedded by another model): a run on a big chunk with one new job
    reads one row. The job columns are NULL for a job deleted since it was registered."""
    return sql.SQL(
        "SELECT s.job_id, s.text_version, s.text_hash, s.model_id, s.embedded_version, s.attempts,"
        " j.{id} IS NOT NULL AS job_exists, j.{embedding} IS NOT NULL AS has_embedding,"
        " coalesce(s.vector_hash = {digest}, false), {columns} "
        "FROM {job_state} s JOIN {chunks} c ON c.chunk_no = s.chunk_no "
        "LEFT JOIN {jobs} j ON j.{id} = s.job_id "
        "WHERE c.chunk_key = %(chunk_key)s AND {not_up_to_date} "
        "ORDER BY s.job_id"
    ).format(
        id=names.id,
        embedding=names.embedding,
        digest=vector_digest(sql.SQL("j.{}").format(names.embedding)),
        columns=names.text_column_list("j"),
        job_state=names.state("job_state"),
        chunks=names.state("chunks"),
        jobs=names.jobs,
        not_up_to_date=not_up_to_date("s"),
    )


def chunk_job_count(names: Names) -> sql.Composed:
    """Jobs of chunk ``%(chunk_key)s`` (NULL when there is no such chunk)."""
    return sql.SQL(
        "SELECT (SELECT count(*) FROM {job_state} s WHERE s.chunk_no = c.chunk_no) FROM {chunks} c "
        "WHERE c.chunk_key = %(chunk_key)s"
    ).format(job_state=names.state("job_state"), chunks=names.state("chunks"))


def write_embeddings(names: Names) -> sql.Composed:
    """One set-based UPDATE of the embedding column for a whole batch; returns the ids that
    still existed, each with the digest of the vector as stored."""
    return sql.SQL(
        "UPDATE {jobs} AS j SET {embedding} = v.embedding "
        "FROM unnest(%b::{id_array}, %b::vector[]) AS v(job_id, embedding) "
        "WHERE j.{id} = v.job_id RETURNING j.{id}, {digest}"
    ).format(
        jobs=names.jobs, embedding=names.embedding, id_array=names.id_array, id=names.id,
        digest=vector_digest(sql.SQL("j.{}").format(names.embedding)),
    )


def record_embedded(names: Names) -> sql.Composed:
    """Mark a batch embedded: the text hash and text version it was embedded from, the model,
    and the digest of the vector written (NULL: the stored vector is kept, its digest too)."""
    return sql.SQL(
        "UPDATE {job_state} AS s SET text_hash = v.text_hash, embedded_version = v.text_version,"
        " vector_hash = coalesce(v.vector_hash, s.vector_hash),"
        " model_id = %b, embedded_at = now(), attempts = 0, last_error = NULL "
        "FROM unnest(%b::{id_array}, %b::bytea[], %b::bigint[], %b::bytea[]) AS v(job_id, text_hash, text_version, vector_hash) "
        "WHERE s.job_id = v.job_id"
    ).format(job_state=names.state("job_state"), id_array=names.id_array)


def record_failure(names: Names) -> sql.Composed:
    return sql.SQL("UPDATE {} SET attempts = attempts + 1, last_error = %s WHERE job_id = ANY(%b::{})").format(
        names.state("job_state"), names.id_array
    )


def visible_jobs(names: Names) -> sql.Composed:
    return sql.SQL("SELECT j.{id} FROM {jobs} j WHERE j.{id} = ANY(%b::{id_array})").format(
        id=names.id, jobs=names.jobs, id_array=names.id_array
    )


def forget_jobs(names: Names) -> sql.Composed:
    """Drop the state of those of these jobs that are still gone from the jobs table, checked in
    the same statement: a job deleted and inserted again meanwhile keeps its (new) state."""
    return sql.SQL(
        "DELETE FROM {job_state} s WHERE s.job_id = ANY(%b::{id_array}) "
        "AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.{id} = s.job_id)"
    ).format(job_state=names.state("job_state"), id_array=names.id_array, jobs=names.jobs, id=names.id)


class WriteStore(StoreBase):
    _replica_role_warned = False
    _skip_table_triggers = False

    def chunk_job_count(self, connection: psycopg.Connection, chunk_key: str) -> int | None:
        row = connection.execute(chunk_job_count(self.names()), {"chunk_key": chunk_key}).fetchone()
        return None if row is None else row[0]

    def read_chunk(self, connection: psycopg.Connection, chunk_key: str, model_id: str) -> list[ChunkRow]:
        """The jobs of the chunk that are not up to date with ``model_id``."""
        rows = connection.execute(read_chunk(self.names()), {"chunk_key": chunk_key, "model_id": model_id}).fetchall()
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
                vector_is_recorded=row[8],
                values=tuple(row[9:]),
            )
            for row in rows
        ]

    def writer_connection(self) -> psycopg.Connection:
        """A connection for embedding writes. Each write asks for ``session_replication_role =
        replica`` so that the table's own triggers (an ``updated_at`` bump, say) do not fire on a
        write of the embedding alone; without that privilege it warns once and writes anyway."""
        connection = self.connect()
        try:
            with connection.transaction():
                connection.execute(SET_REPLICA_ROLE)
            self._skip_table_triggers = True
        except psycopg.errors.InsufficientPrivilege:
            self._skip_table_triggers = False
            if not self._replica_role_warned:
                self._replica_role_warned = True
                logger.warning(
                    "cannot SET session_replication_role: triggers on %s will fire on embedding "
                    "writes. GRANT SET ON PARAMETER session_replication_role TO <role> to prevent it.",
                    self.settings.jobs_table,
                )
        return connection

    def check_configuration(self, connection: psycopg.Connection) -> None:
        """Inside a transaction that records vectors as fresh: the text and embedding columns this
        run reads are still those setup recorded; held until the commit (``RECORDED_CONFIGURATION``).
        Otherwise :class:`ConfigurationChanged`, and the transaction writes nothing."""
        names = self.names()
        recorded = dict(connection.execute(sql.SQL(RECORDED_CONFIGURATION).format(names.state("meta"))).fetchall())
        ours = {"text_columns": ",".join(names.text_columns), "embedding_column": names.embedding_column}
        changed = {key: value for key, value in recorded.items() if ours.get(key) != value}
        if changed:
            raise ConfigurationChanged(
                "the configuration changed while this run was going: setup now records "
                + ", ".join(f"{key} {value!r} (this run read {ours[key]!r})" for key, value in changed.items())
                + "; nothing was written by this write, and the jobs stay due for a run with the new configuration"
            )

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
        names = self.names()
        with connection.transaction():
            self.check_configuration(connection)
            if self._skip_table_triggers:
                connection.execute(SET_REPLICA_ROLE)
            connection.execute(MARK_VECTOR_WRITE)
            digests = dict(connection.execute(write_embeddings(names), (list(job_ids), list(vectors))).fetchall())
            if digests:
                keep = [index for index, job_id in enumerate(job_ids) if job_id in digests]
                connection.execute(
                    record_embedded(names),
                    (
                        model_id,
                        [job_ids[index] for index in keep],
                        [hashes[index] for index in keep],
                        [versions[index] for index in keep],
                        [digests[job_ids[index]] for index in keep],
                    ),
                )
        return list(digests)

    def record_unchanged(
        self,
        connection: psycopg.Connection,
        job_ids: Sequence[Any],
        hashes: Sequence[bytes],
        versions: Sequence[int],
        model_id: str,
    ) -> None:
        """Jobs whose text and model match their stored vector, which is the one the pipeline
        recorded writing: only their state moves on."""
        if job_ids:
            with connection.transaction():
                self.check_configuration(connection)
                connection.execute(
                    record_embedded(self.names()), (model_id, list(job_ids), list(hashes), list(versions), [None] * len(job_ids))
                )

    def record_failure(self, job_ids: Sequence[Any], error: str) -> None:
        """Count a failed attempt for these jobs, on a fresh connection (the failing one may be broken)."""
        if not job_ids:
            return
        with self.connect() as connection:
            connection.execute(record_failure(self.names()), (error[:2000], list(job_ids)))
            connection.commit()

    def why_not_written(self, connection: psycopg.Connection, job_ids: Sequence[Any]) -> tuple[list[Any], dict[str, list[Any]]]:
        """Jobs that an UPDATE (or the chunk's read) did not reach: (deleted ones, reason -> ids
        for the others). A row the role cannot see is deleted only where row-level security is
        off; under it, nothing can tell, so the job is kept and fails with the reason."""
        if not job_ids:
            return [], {}
        with connection.transaction():
            visible = {row[0] for row in connection.execute(visible_jobs(self.names()), (list(job_ids),))}
            row_security = self.row_security_active(connection)
            role = self.role(connection)
        table = self.settings.jobs_table
        reasons: dict[str, list[Any]] = {}
        deleted: list[Any] = []
        for job_id in job_ids:
            if job_id in visible:
                reason = (
                    f"row-level security on {table} does not let role {role} UPDATE this row (no UPDATE policy admits it)"
                    if row_security
                    else f"the UPDATE reached no row although the job exists (a BEFORE UPDATE trigger or a rule on {table} skipped it)"
                )
            elif row_security:
                reason = (
                    f"row-level security on {table} hides this row from role {role}: it cannot be embedded, "
                    "and whether it was deleted cannot be told"
                )
            else:
                deleted.append(job_id)
                continue
            reasons.setdefault(reason, []).append(job_id)
        return deleted, reasons

    def forget_jobs(self, connection: psycopg.Connection, job_ids: Sequence[Any]) -> None:
        if job_ids:
            with connection.transaction():
                connection.execute(forget_jobs(self.names()), (list(job_ids),))
