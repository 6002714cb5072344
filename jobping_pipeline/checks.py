"""Asset checks on ``job_embeddings``: coverage over the whole table, and vector sanity.

They run on their own schedule (``embedding_checks_schedule``), not inside embedding runs, so a
backfill that is still going does not fail them in every partition run. The per-chunk check is
emitted by the asset itself (see assets.py)."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from jobping_pipeline.assets import job_embeddings
from jobping_pipeline.database import Coverage, JobStore, ProblemJob
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

NORM_TOLERANCE = 1e-3


def coverage_metadata(coverage: Coverage, problems: list[ProblemJob]) -> dict:
    """Numbers the UI plots over time, plus the jobs that are missing or failed."""
    return {
        "coverage_percent": MetadataValue.float(round(coverage.percent, 4)),
        "eligible": coverage.eligible,
        "fresh": coverage.fresh,
        "pending": coverage.pending,
        "stale": coverage.stale,
        "missing": coverage.missing,
        "failed": coverage.failed,
        "problem_jobs": MetadataValue.md(
            "\n".join(f"- {problem.describe()}" for problem in problems) or "none"
        ),
    }


def evaluate_coverage(store: JobStore, model_id: str) -> AssetCheckResult:
    """Fresh embeddings over eligible jobs; ERROR below 100%, jobs in the grace period excepted.
    Jobs whose vector vanished behind the pipeline's back are also marked for the sensor."""
    coverage = store.coverage(model_id)
    problems = [] if coverage.complete else store.problem_jobs(model_id)
    requeued = store.requeue_lost_vectors() if coverage.missing else 0
    metadata = coverage_metadata(coverage, problems)
    metadata["requeued_lost_vectors"] = requeued
    return AssetCheckResult(
        check_name="coverage",
        passed=coverage.complete,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{coverage.percent:.2f}% of {coverage.eligible - coverage.pending} due jobs have a fresh "
            f"embedding from {model_id} ({coverage.pending} pending within the grace period)"
        ),
        metadata=metadata,
    )


def evaluate_vector_sanity(store: JobStore, model_dimensions: int | None) -> AssetCheckResult:
    """The column's dimension matches the model's (as recorded by setup), and every vector has
    unit length."""
    column_dimensions = store.inspect(refresh=True).embedding_dimensions
    total, off_norm, off_ids = store.vector_sanity(NORM_TOLERANCE)
    dimension_ok = model_dimensions is not None and column_dimensions == model_dimensions
    return AssetCheckResult(
        check_name="vector_sanity",
        passed=dimension_ok and off_norm == 0,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"column vector({column_dimensions}), model {model_dimensions} dims; "
            f"{off_norm} of {total} vectors not unit length"
        ),
        metadata={
            "vectors": total,
            "not_unit_length": off_norm,
            "column_dimensions": column_dimensions or 0,
            "model_dimensions": model_dimensions or 0,
            "not_unit_length_ids": ", ".join(off_ids) or "none",
        },
    )


@asset_check(asset=job_embeddings, name="coverage")
def coverage_check(jobs_database: JobsDatabase, embedding_model: EmbeddingModel) -> AssetCheckResult:
    """Every eligible job has an embedding from the configured model for its current text.

    Fails (ERROR) below 100%; jobs added or edited within the grace period count as pending,
    not missing. Metadata: coverage %, eligible, fresh, pending, stale, missing, failed, and the
    first 50 problem jobs with their errors."""
    return evaluate_coverage(jobs_database.store(), embedding_model.spec().model_id)


@asset_check(asset=job_embeddings, name="vector_sanity")
def vector_sanity_check(jobs_database: JobsDatabase) -> AssetCheckResult:
    """Stored vectors are usable: the column's dimension is the model's and every vector has
    unit length (pgvector itself refuses NaN and infinite values)."""
    store = jobs_database.store()
    recorded = store.meta().get("embedding_dimensions")
    return evaluate_vector_sanity(store, int(recorded) if recorded else None)
