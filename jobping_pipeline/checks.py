"""Asset checks on ``job_embeddings``: coverage over the whole table, and vector sanity.

They run on their own schedule (``embedding_checks_schedule``); inside embedding runs they skip
themselves, so a backfill that is still going does not fail them in every partition run. The
per-chunk check is emitted by the asset itself (see assets.py)."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from jobping_pipeline.assets import job_embeddings, problems_markdown
from jobping_pipeline.store import Coverage, JobStore, ProblemJob
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

NORM_TOLERANCE = 1e-3
COVERAGE_CHECK = "coverage"
VECTOR_SANITY_CHECK = "vector_sanity"


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
        "problem_jobs": problems_markdown(problems),
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
        check_name=COVERAGE_CHECK,
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
        check_name=VECTOR_SANITY_CHECK,
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



@multi_asset_check(
    name="table_checks",
    specs=[
        AssetCheckSpec(
            COVERAGE_CHECK,
            asset=job_embeddings.key,
            description="Every eligible job has an embedding from the configured model for its "
            "current text. ERROR below 100%; jobs added or edited within the grace period are "
            "pending, not missing. Metadata: coverage %, eligible, fresh, pending, stale, missing, "
            "failed, and the first 50 problem jobs with their errors.",
        ),
        AssetCheckSpec(
            VECTOR_SANITY_CHECK,
            asset=job_embeddings.key,
            description="The column's dimension is the model's and every vector has unit length "
            "(pgvector itself refuses NaN and infinite values).",
        ),
    ],
    can_subset=True,
)
def table_checks(
    context: AssetCheckExecutionContext, jobs_database: JobsDatabase, embedding_model: EmbeddingModel
):
    """Coverage and vector sanity over the whole jobs table.

    Evaluated by the schedule embedding_checks_schedule (or on demand), never inside a run that
    is itself embedding chunks: there, mid-backfill, coverage is below 100% by construction, so
    those runs skip these checks (the UI shows them as not evaluated) instead of failing them."""
    if job_embeddings.key in (context.run.asset_selection or set()):
        context.log.info("skipped inside an embedding run; embedding_checks_schedule evaluates them")
        return
    store = jobs_database.store()
    selected = {key.name for key in context.selected_asset_check_keys}
    if COVERAGE_CHECK in selected:
        yield evaluate_coverage(store, embedding_model.spec().model_id)
    if VECTOR_SANITY_CHECK in selected:
        recorded = store.meta().get("embedding_dimensions")
        yield evaluate_vector_sanity(store, int(recorded) if recorded else None)
