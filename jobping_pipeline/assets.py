"""The ``job_embeddings`` asset: one chunk of jobs per partition, vectors in ``jobs.embedding``."""

import warnings

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    asset,
)

from jobping_pipeline.embedding import ChunkReport, embed_chunk
from jobping_pipeline.partitions import job_chunks
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

# A UI backfill over many chunks runs up to this many chunks in one run, so one process loads
# the model once for all of them instead of once per chunk.
CHUNKS_PER_BACKFILL_RUN = 10


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
        "distinct_texts": sum(report.distinct_texts for report in reports),
        "jobs_per_second": MetadataValue.float(round(embedded / wall, 2) if wall > 0 else 0.0),
        "encode_seconds": MetadataValue.float(round(sum(r.encode_seconds for r in reports), 3)),
        "database_seconds": MetadataValue.float(round(sum(r.database_seconds for r in reports), 3)),
        "wall_seconds": MetadataValue.float(round(wall, 3)),
        "model_id": model_id,
        "device": device,
    }


def job_embeddings(
    context: AssetExecutionContext, jobs_database: JobsDatabase, embedding_model: EmbeddingModel
) -> MaterializeResult:
    """Vector embeddings of the jobs table, one partition per chunk of jobs.

    Materializing a partition embeds every job of that chunk whose text or model changed since
    its last embedding, and writes the vectors into the embedding column with a set-based
    UPDATE of that column only (never an INSERT or upsert). Unchanged jobs are skipped, equal
    texts are encoded once, and any failure fails the run with the failed jobs' errors recorded.
    """
    store = jobs_database.store()
    encoder = embedding_model.encoder()
    store.check_dimensions(encoder.dimensions)
    reports = []
    for chunk_key in context.partition_keys:
        report = embed_chunk(store, encoder, chunk_key, embedding_model.batch_size)
        context.log.info(
            f"chunk {chunk_key}: {report.jobs} jobs, {report.embedded} embedded, "
            f"{report.unchanged} unchanged, {report.deleted} deleted, "
            f"{report.jobs_per_second:.1f} jobs/s (model {report.encode_seconds:.1f}s, "
            f"database {report.database_seconds:.1f}s)"
        )
        reports.append(report)
    return MaterializeResult(metadata=materialization_metadata(reports, encoder.model_id, encoder.device))


with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # backfill_policy is beta in Dagster 1.13
    job_embeddings = asset(
        partitions_def=job_chunks,
        group_name="embeddings",
        kinds={"postgres", "pytorch"},
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=CHUNKS_PER_BACKFILL_RUN),
    )(job_embeddings)
