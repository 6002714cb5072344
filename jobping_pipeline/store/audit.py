"""The vector audit's SQL: every job the state calls fresh, read with its row as it is now, and
the jobs found wrong queued for repair. What the audit proves: ``state.md`` in this folder."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
from psycopg import sql

from jobping_pipeline.store.catalog import Names, StoreBase
from jobping_pipeline.store.setup import foreign_vector, vector_digest

AUDIT_FETCH_ROWS = 2000


def audited_jobs(names: Names) -> sql.Composed:
    """Every job the state records as embedded from its current text by ``%(model_id)s``, with
    what the state recorded (text version, text hash), whether the row has a vector, the digest
    of that vector as stored, and the row's text columns now. One statement, so the row and its
    state come from one snapshot (a run writes both in one transaction)."""
    return sql.SQL(
        "SELECT s.job_id, s.text_version, s.text_hash, s.vector_hash, {digest}, {columns} "
        "FROM {job_state} s JOIN {jobs} j ON j.{id} = s.job_id "
        "WHERE NOT s.dirty AND s.model_id = %(model_id)s"
    ).format(
        digest=vector_digest(sql.SQL("j.{}").format(names.embedding)),
        columns=names.text_column_list("j"),
        job_state=names.state("job_state"),
        jobs=names.jobs,
        id=names.id,
    )


def audited_count(names: Names) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} s WHERE NOT s.dirty AND s.model_id = %(model_id)s").format(
        names.state("job_state")
    )


def jobs_with_vector_digests(names: Names) -> sql.Composed:
    """Jobs whose recorded vector digest is one of ``%(digests)s``: whose vector a row holds."""
    return sql.SQL("SELECT vector_hash, job_id FROM {} WHERE vector_hash = ANY(%(digests)s)").format(
        names.state("job_state")
    )


def stored_vectors(names: Names) -> sql.Composed:
    return sql.SQL("SELECT j.{id}, j.{embedding}, {digest} FROM {jobs} j WHERE j.{id} = ANY(%b::{id_array})").format(
        id=names.id,
        embedding=names.embedding,
        digest=vector_digest(sql.SQL("j.{}").format(names.embedding)),
        jobs=names.jobs,
        id_array=names.id_array,
    )


def queue_for_repair(names: Names) -> sql.Composed:
    """Jobs the audit found wrong: stale, due at once, with the reason as their last error (so
    every check names them), and never taken for unchanged by a run. Only where the state is
    still the one the audit read: a job edited or embedded since is left to that change."""
    return sql.SQL(
        "UPDATE {job_state} AS s SET {foreign_vector} "
        "FROM unnest(%b::{id_array}, %b::bigint[], %b::text[]) AS v(job_id, text_version, reason) "
        "WHERE s.job_id = v.job_id AND s.text_version = v.text_version AND NOT s.dirty"
    ).format(job_state=names.state("job_state"), foreign_vector=foreign_vector(names, sql.SQL("v.reason")), id_array=names.id_array)


class AuditStore(StoreBase):
    def audited_jobs(self, model_id: str) -> Iterator[tuple]:
        """Streams (job id, text version, recorded text hash, recorded vector digest, stored
        vector digest, *text column values) for every job the state calls fresh."""
        with self.connect(vectors=False) as connection:
            with connection.cursor(name="jobping_audit") as cursor:
                cursor.itersize = AUDIT_FETCH_ROWS
                cursor.execute(audited_jobs(self.names()), {"model_id": model_id})
                for row in cursor:
                    yield (row[0], row[1], _bytes(row[2]), _bytes(row[3]), _bytes(row[4]), *row[5:])
            connection.commit()

    def audited_count(self, model_id: str) -> int:
        """How many jobs the state records as fresh for ``model_id`` (what an audit reads)."""
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(audited_count(self.names()), {"model_id": model_id}).fetchone()[0]

    def jobs_holding(self, digests: Sequence[bytes]) -> dict[bytes, Any]:
        """For each of these vector digests, a job whose recorded vector it is."""
        if not digests:
            return {}
        with self.connect(autocommit=True, vectors=False) as connection:
            rows = connection.execute(jobs_with_vector_digests(self.names()), {"digests": list(digests)})
            return {bytes(digest): job_id for digest, job_id in rows}

    def stored_vectors(self, job_ids: Sequence[Any]) -> dict[Any, tuple[np.ndarray, bytes]]:
        """The vector of each of these jobs as stored now, with its digest."""
        if not job_ids:
            return {}
        with self.connect(autocommit=True) as connection:
            rows = connection.execute(stored_vectors(self.names()), (list(job_ids),))
            return {job_id: (np.asarray(vector.to_numpy(), dtype=np.float32), bytes(digest)) for job_id, vector, digest in rows if vector is not None}

    def queue_for_repair(self, problems: Sequence[tuple[Any, int, str]]) -> int:
        """Queue (job id, text version read, reason) for re-embedding; returns how many were."""
        if not problems:
            return 0
        job_ids, versions, reasons = (list(column) for column in zip(*problems))
        with self.connect(vectors=False) as connection:
            queued = connection.execute(queue_for_repair(self.names()), (job_ids, versions, reasons)).rowcount
            connection.commit()
        return queued


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)

