"""Asset checks on ``job_embeddings`` over the whole table: coverage, deep coverage, vector
sanity, and the vector audit.

``coverage`` counts from the pipeline's own state (a fraction of a second at a million jobs) and
runs every 5 minutes (``embedding_checks_schedule``). ``deep_coverage`` counts from the jobs table
itself, joined to the state, and heals what the triggers never saw; with ``vector_sanity`` and
``vector_audit`` (which checks each fresh job's text and vector against what was recorded, and
embeds a sample again) it runs hourly (``embedding_deep_checks_schedule``). Inside embedding runs they skip themselves, so a
backfill that is still going does not fail them in every partition run. The per-chunk check is
emitted by the asset itself (see assets.py)."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from jobping_pipeline.assets import job_embeddings, problems_markdown
from jobping_pipeline.audit import COSINE_TOLERANCE, DEFAULT_SAMPLE, AuditReport, audit, detection_probability
from jobping_pipeline.store import Coverage, JobStore, ProblemJob
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

NORM_TOLERANCE = 1e-3
COVERAGE_CHECK = "coverage"
DEEP_COVERAGE_CHECK = "deep_coverage"
VECTOR_SANITY_CHECK = "vector_sanity"
VECTOR_AUDIT_CHECK = "vector_audit"
PROBLEMS_LISTED = 50


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
        "without_state": coverage.without_state,
        "hidden_by_row_security": coverage.hidden,
        "problem_jobs": problems_markdown(problems),
    }


def coverage_result(check_name: str, coverage: Coverage, problems: list[ProblemJob], model_id: str, **extra) -> AssetCheckResult:
    """Passes only when every eligible job is fresh. Not fresh only because of the application's
    inserts and edits of the last JOBPING_GRACE_MINUTES: WARN. Anything else: ERROR."""
    description = (
        f"{coverage.fresh} of {coverage.eligible} eligible jobs have a fresh embedding from {model_id}"
        + (f"; {coverage.pending} pending (inserted or edited by the application within the grace period)" if coverage.pending else "")
        + (f"; {coverage.stale + coverage.missing - coverage.failed} stale or missing" if coverage.stale + coverage.missing > coverage.failed else "")
        + (f"; {coverage.failed} failed" if coverage.failed else "")
        + (f"; {coverage.hidden} jobs hidden from this role by row-level security" if coverage.hidden else "")
    )
    return AssetCheckResult(
        check_name=check_name,
        passed=coverage.complete,
        severity=AssetCheckSeverity.WARN if coverage.only_pending else AssetCheckSeverity.ERROR,
        description=description,
        metadata={**coverage_metadata(coverage, problems), **extra},
    )


def evaluate_coverage(store: JobStore, model_id: str) -> AssetCheckResult:
    """Coverage as the pipeline's state records it: no join with the jobs table, so it stays
    cheap at any size. The triggers keep the state true for every change made through them;
    :func:`evaluate_deep_coverage` proves it from the table itself, hourly."""
    coverage = store.state_coverage(model_id)
    problems = [] if coverage.complete else store.problem_jobs(model_id, from_state=True)
    return coverage_result(COVERAGE_CHECK, coverage, problems, model_id)


def evaluate_deep_coverage(store: JobStore, model_id: str) -> AssetCheckResult:
    """Coverage counted from the jobs table itself, row by row against the state.

    It also heals what the sensor cannot see: jobs whose vector vanished behind the pipeline's
    back, and jobs with no state row (inserted with triggers bypassed), are queued for it."""
    coverage = store.coverage(model_id)
    problems = [] if coverage.complete else store.problem_jobs(model_id)
    return coverage_result(
        DEEP_COVERAGE_CHECK,
        coverage,
        problems,
        model_id,
        requeued_lost_vectors=store.requeue_lost_vectors() if coverage.missing else 0,
        queued_jobs_without_state=store.queue_jobs_without_state() if coverage.without_state else 0,
    )


def evaluate_vector_audit(store: JobStore, embedding_model: EmbeddingModel, sample: int = DEFAULT_SAMPLE) -> AssetCheckResult:
    """The vector audit (jobping_pipeline/audit.py): every job the state calls fresh has the text
    and the vector that were recorded when it was embedded, and a random sample embedded again
    matches its stored vector. Jobs found wrong are queued for the sensor; ERROR until repaired."""
    report = audit(store, embedding_model.spec(), embedding_model.encoder, sample=sample)
    return audit_result(report)


def audit_result(report: AuditReport) -> AssetCheckResult:
    problems = report.problems[:PROBLEMS_LISTED]
    return AssetCheckResult(
        check_name=VECTOR_AUDIT_CHECK,
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR,
        description=report.summary(),
        metadata={
            "audited": report.audited,
            "embedded_again": report.sampled,
            "lowest_cosine": MetadataValue.float(round(report.lowest_cosine, 6) if report.lowest_cosine is not None else 1.0),
            "problems": len(report.problems),
            **{f"problems: {kind}": count for kind, count in report.counts().items()},
            "queued_for_repair": report.queued,
            "problem_jobs": MetadataValue.md("\n".join(f"- {problem.describe()}" for problem in problems) or "none"),
            "sweep_seconds": MetadataValue.float(round(report.sweep_seconds, 3)),
            "model_seconds": MetadataValue.float(round(report.model_seconds, 3)),
        },
    )


def evaluate_vector_sanity(store: JobStore, model_dimensions: int | None) -> AssetCheckResult:
    """The column's dimension matches the configured model's, and every vector has unit length."""
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
            "current text, as the pipeline's state records it (every 5 minutes; cheap at any size). "
            "Fails otherwise: WARN when the only jobs not fresh are the application's inserts and "
            "edits of the grace period, ERROR for anything else. Metadata: coverage %, eligible, "
            "fresh, pending, stale, missing, failed, the first 50 problem jobs.",
        ),
        AssetCheckSpec(
            DEEP_COVERAGE_CHECK,
            asset=job_embeddings.key,
            description="The coverage check counted from the jobs table itself (hourly): also "
            "finds jobs whose vector was removed or that were inserted with triggers bypassed, "
            "queues them for the sensor, and counts jobs hidden by row-level security.",
        ),
        AssetCheckSpec(
            VECTOR_SANITY_CHECK,
            asset=job_embeddings.key,
            description="The column's dimension is the configured model's and every vector has unit "
            "length (pgvector itself refuses NaN and infinite values). Hourly: it reads every vector.",
        ),
        AssetCheckSpec(
            VECTOR_AUDIT_CHECK,
            asset=job_embeddings.key,
            description="Fresh, verified (hourly): for every job the state calls fresh, the text is "
            "built again from the row as it is now and its hash compared with the one recorded at "
            "embedding time (an edit the triggers never saw), and the stored vector's digest with the "
            "one the pipeline wrote (another writer, a vector of another row); then a random sample "
            f"of {DEFAULT_SAMPLE} is embedded again with the configured model and compared by cosine "
            f"(below {COSINE_TOLERANCE}: not the model's vector of its text). A sample of {DEFAULT_SAMPLE} "
            f"catches a table where 1% of the vectors are not the model's with probability "
            f"{detection_probability(0.01, DEFAULT_SAMPLE):.1%} ({detection_probability(0.02, DEFAULT_SAMPLE):.1%} "
            "at 2%). Every job found wrong is queued for the sensor; ERROR until it is repaired.",
        ),
    ],
    can_subset=True,
)
def table_checks(
    context: AssetCheckExecutionContext, jobs_database: JobsDatabase, embedding_model: EmbeddingModel
):
    """Coverage, deep coverage, vector sanity and the vector audit over the whole jobs table.

    Evaluated by the schedules embedding_checks_schedule (coverage, every 5 minutes) and
    embedding_deep_checks_schedule (deep coverage, vector sanity and the audit, hourly), or on demand;
    never inside a run that is itself embedding chunks: there, mid-backfill, coverage is below 100% by construction, so
    those runs skip these checks (the UI shows them as not evaluated) instead of failing them."""
    if job_embeddings.key in (context.run.asset_selection or set()):
        context.log.info("skipped inside an embedding run; the check schedules evaluate them")
        return
    store = jobs_database.store()
    selected = {key.name for key in context.selected_asset_check_keys}
    model_id = embedding_model.spec().model_id
    if COVERAGE_CHECK in selected:
        yield evaluate_coverage(store, model_id)
    if DEEP_COVERAGE_CHECK in selected:
        yield evaluate_deep_coverage(store, model_id)
    if VECTOR_SANITY_CHECK in selected:
        yield evaluate_vector_sanity(store, embedding_model.encoder().dimensions)
    if VECTOR_AUDIT_CHECK in selected:
        yield evaluate_vector_audit(store, embedding_model)
