"""The assets: the jobs table (external, maintained by the job board) and ``job_embeddings``,
one chunk of jobs per partition, vectors in ``jobs.embedding``."""

import warnings

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    DagsterExecutionInterruptedError,
    MaterializeResult,
    MetadataValue,
    asset,
)

from jobping_pipeline import encoding_ahead
from jobping_pipeline.store import JobStore, ProblemJob
from jobping_pipeline.models import ModelSpec
from jobping_pipeline.embedding import ChunkReport, EmbeddingFailed, embed_chunk_with_retries
from jobping_pipeline.liveness import heartbeat
from jobping_pipeline.partitions import CHUNKS_PER_RUN, job_chunks
from jobping_pipeline.progress import chunk_finished
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

# The chunks a sensor run was requested for (sensors.run_request), as "000003,000007".
SENSOR_CHUNKS_TAG = "jobping/chunks"
# dagster.yaml limits this pool, so that embedding runs don't oversubscribe the CPU or GPU.
EMBEDDING_POOL = "jobping_embedding"


def materialization_metadata(reports: list[ChunkReport], model_id: str, device: str) -> dict:
    """Numbers the UI can plot, summed over the chunks of the run."""
    embedded = sum(report.embedded for report in reports)
    wall = sum(report.wall_seconds for report in reports)
    return {
        "chunks": len(reports),
        "jobs": sum(report.jobs for report in reports),
        "jobs_embedded": embedded,
        "jobs_unchanged": sum(report.unchanged for report in reports),
        "jobs_deleted": sum(report.deleted for report in reports),
        "jobs_failed": sum(report.failed for report in reports),
        "distinct_texts": sum(report.distinct_texts for report in reports),
        "jobs_per_second": MetadataValue.float(round(embedded / wall, 2) if wall > 0 else 0.0),
        "encode_seconds": MetadataValue.float(round(sum(r.encode_seconds for r in reports), 3)),
        "database_seconds": MetadataValue.float(round(sum(r.database_seconds for r in reports), 3)),
        "wall_seconds": MetadataValue.float(round(wall, 3)),
        "model_id": model_id,
        "device": device,
    }


CHUNK_CHECK = "chunk_embeddings_fresh"

jobs_table = AssetSpec(
    "jobs",
    description="The job board's jobs table (JOBPING_JOBS_TABLE), written by the application. The "
    "pipeline reads its text columns and writes nothing but the embedding column.",
    group_name="embeddings",
    kinds={"postgres"},
)


def problems_markdown(problems: list[ProblemJob]) -> MetadataValue:
    """Jobs without a fresh vector, one line each with their error, for check metadata."""
    return MetadataValue.md("\n".join(f"- {problem.describe()}" for problem in problems) or "none")


def chunk_check_result(
    store: JobStore, model_id: str, chunk_keys: list[str], failed_in_run: int = 0
) -> AssetCheckResult:
    """After a run: did every eligible job of its chunks end up fresh, and did none fail? Jobs
    that failed are an ERROR, listed with their reasons (``failed_in_run`` also counts jobs the
    role cannot see, which the counts from the jobs table cannot); jobs edited while the run was
    going are a WARN (the sensor picks them up)."""
    counts = store.coverage(model_id, chunk_keys)
    complete = counts.complete and not failed_in_run
    problems = [] if complete else store.problem_jobs(model_id, chunk_keys)
    failed = [problem for problem in problems if problem.last_error]
    return AssetCheckResult(
        check_name=CHUNK_CHECK,
        passed=complete,
        severity=AssetCheckSeverity.ERROR if counts.failed or failed_in_run else AssetCheckSeverity.WARN,
        description=(
            f"{counts.fresh} of {counts.eligible} eligible jobs fresh"
            + (f"; {max(counts.failed, failed_in_run)} failed" if counts.failed or failed_in_run else "")
            + (f", first: {failed[0].describe()}" if failed else "")
        ),
        metadata={
            "eligible": counts.eligible,
            "fresh": counts.fresh,
            "failed": counts.failed,
            "not_fresh_jobs": problems_markdown(problems),
        },
    )


def job_embeddings(
    context: AssetExecutionContext, jobs_database: JobsDatabase, embedding_model: EmbeddingModel
) -> MaterializeResult:
    """Vector embeddings of the jobs table, one partition per chunk of jobs.

    Materializing a partition embeds every job of that chunk whose text or model changed since
    its last embedding, and writes the vectors into the embedding column with a set-based
    UPDATE of that column only (never an INSERT or upsert). Unchanged jobs are skipped, equal
    texts are encoded once. A job that cannot be embedded (or written: row-level security, say)
    is recorded with its reason; the chunks are materialized with what was written and the check
    chunk_embeddings_fresh fails with ERROR, listing the jobs. A run that fails as a whole
    (wrong dimension, database or API down, GPU lost: no job is charged for those) is counted
    per chunk, and the sensor backs off on it. The run beats a heartbeat in the jobs database
    while it works, so a run whose worker was killed is seen as ended and its work requested
    again."""
    chunk_keys = list(context.partition_keys)
    store = jobs_database.store()
    try:
        with heartbeat(store, context.run_id, log=context.log):
            reports = _embed_chunks(context, store, embedding_model, chunk_keys)
    except DagsterExecutionInterruptedError:
        context.log.warning(
            "stopped: the write in flight finished, every vector written so far is committed with its state, "
            "and the jobs not reached stay due"
        )
        raise
    except Exception as error:
        _record_run_failure(context, store, chunk_keys, error)
        raise
    store.record_run_outcome(chunk_keys, None)
    model_id = embedding_model.spec().model_id
    failed = sum(report.failed for report in reports)
    return MaterializeResult(
        metadata=materialization_metadata(reports, model_id, embedding_model.encoder().device),
        check_results=[chunk_check_result(store, model_id, chunk_keys, failed)],
    )


def _record_run_failure(context, store: JobStore, chunk_keys: list[str], error: Exception) -> None:
    """Count the failure per chunk for the sensor's backoff; a database that is down cannot
    record it, and must not hide the error that failed the run."""
    try:
        store.record_run_outcome(chunk_keys, f"{type(error).__name__}: {error}")
    except Exception as recording_error:  # noqa: BLE001 - the run's own error is raised next
        context.log.warning(f"could not record the failed run for the sensor's backoff: {recording_error}")


def _embed_chunks(context, store: JobStore, embedding_model: EmbeddingModel, chunk_keys: list[str]) -> list[ChunkReport]:
    encoder = embedding_model.encoder()
    batch_size = embedding_model.settings().batch_size
    store.check_dimensions(encoder.dimensions, encoder.model_id)
    store.check_text_columns()
    reports: list[ChunkReport] = []
    # A range run (from the sensor: up to 10 dirty chunks, however far apart) skips the chunks
    # in between that are up to date, with one query instead of a read per chunk. A sensor run
    # embeds only the chunks it was requested for (its tag): the chunks in between that are
    # stale only because JOBPING_MODEL changed wait for a deliberate backfill.
    with_work = {key for key, _ in store.chunks_with_pending_work(encoder.model_id)} if len(chunk_keys) > 1 else None
    requested = context.run.tags.get(SENSOR_CHUNKS_TAG)
    if with_work is not None and requested:
        with_work &= set(requested.split(","))
    ahead = encoding_ahead.active_for(encoder)  # the CLI's backfill: encoded while Dagster worked
    own_ahead = None
    if ahead is None and with_work is not None and len(with_work) > 1 and isinstance(encoder.spec, ModelSpec):
        # Chunk n+1 is encoded while chunk n is written and the next one read.
        ordered = [key for key in chunk_keys if key in with_work]
        ahead = own_ahead = encoding_ahead.encode_ahead_of(encoder, store, batch_size, ordered)
    try:
        for chunk_key in chunk_keys:
            if with_work is not None and chunk_key not in with_work:
                reports.append(ChunkReport(chunk_key=chunk_key))
                continue
            reports.append(_embed_and_report(context, store, encoder, chunk_key, batch_size, ahead))
    finally:
        if own_ahead is not None:
            own_ahead.stop(wait=False)  # done, or the run is failing: its thread ends after the batches under way
    return reports


def _embed_and_report(context, store: JobStore, encoder, chunk_key: str, batch_size: int, ahead) -> ChunkReport:
    """One chunk: embedded, logged, and told to this process's chunk listeners."""
    error_message = None
    try:
        report = embed_chunk_with_retries(store, encoder, chunk_key, batch_size, log=context.log, ahead=ahead)
    except EmbeddingFailed as error:
        error_message = str(error)
        context.log.error(error_message)
        report = error.report or ChunkReport(chunk_key=chunk_key)
    context.log.info(
        f"chunk {chunk_key}: {report.jobs} jobs, {report.embedded} embedded, "
        f"{report.unchanged} unchanged, {report.deleted} deleted, {report.failed} failed, "
        f"{report.jobs_per_second:.1f} jobs/s (model {report.encode_seconds:.1f}s, "
        f"database {report.database_seconds:.1f}s)"
    )
    chunk_finished(report, error_message)
    return report


with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # backfill_policy is beta in Dagster 1.13
    job_embeddings = asset(
        partitions_def=job_chunks,
        deps=[jobs_table],
        group_name="embeddings",
        kinds={"postgres", "pytorch"},
        pool=EMBEDDING_POOL,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=CHUNKS_PER_RUN),
        check_specs=[
            AssetCheckSpec(
                CHUNK_CHECK,
                asset="job_embeddings",
                description="Every eligible job of the materialized chunks has a fresh embedding; "
                "failed jobs are listed with their errors.",
            )
        ],
    )(job_embeddings)
