"""The jobs database, split by domain; each module holds its SQL beside the code that runs it.

=================  ================================================================
``catalog``        connecting, the jobs table's shape, quoted names, the meta table
``setup``          extension, embedding column, state schema, change-capture triggers
``chunks``         the chunk registry and the per-chunk lock
``writes``         reading one chunk and the set-based UPDATE of its vectors
``coverage``       coverage, problem jobs, vector sanity
``search``         nearest jobs, the SQL search function, vector indexes
``audit``          every job the state calls fresh, read with its row now; repairs queued
``runs``           run liveness: the heartbeats of the runs, for the sensor
=================  ================================================================

What every state of a job means, who writes each field of ``job_state`` and what must always
hold: ``state.md`` in this folder.
"""

from jobping_pipeline.store.audit import AuditStore
from jobping_pipeline.store.catalog import Column, DatabaseUnavailable, JobsTable, Names
from jobping_pipeline.store.chunks import ChunkStore
from jobping_pipeline.store.coverage import Coverage, CoverageStore, ProblemJob
from jobping_pipeline.store.runs import RunStore
from jobping_pipeline.store.search import SearchStore
from jobping_pipeline.store.setup import SetupStore
from jobping_pipeline.store.writes import ChunkRow, WriteStore


class JobStore(SetupStore, ChunkStore, WriteStore, CoverageStore, SearchStore, AuditStore, RunStore):
    """One configured jobs table and the pipeline's state schema next to it."""

    def prepare_chunks(self, dimensions: int) -> tuple[list[str], list[str]]:
        """What a backfill does before its runs: setup (idempotent; queues every job without
        state, one table scan), vectors removed behind the pipeline's back queued again (one
        more), chunks for every queued job. Returns setup's changes and the new chunk keys."""
        changes = self.setup(dimensions)
        lost = self.requeue_lost_vectors()
        if lost:
            changes.append(f"{lost} jobs whose vector was removed behind the pipeline's back queued again")
        return changes, self.register_chunks(scan_table=False)


__all__ = [
    "ChunkRow",
    "Column",
    "Coverage",
    "DatabaseUnavailable",
    "JobStore",
    "JobsTable",
    "Names",
    "ProblemJob",
]
