"""The code location: assets, checks, jobs, the sensor, the check schedule and resources,
configured from the environment."""

import json

from dagster import (
    AssetCheckKey,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)

from jobping_pipeline.assets import CHUNK_CHECK, job_embeddings, jobs_table
from jobping_pipeline.checks import (
    COVERAGE_CHECK,
    DEEP_COVERAGE_CHECK,
    VECTOR_AUDIT_CHECK,
    VECTOR_SANITY_CHECK,
    table_checks,
)
from jobping_pipeline.partitions import job_chunks
from jobping_pipeline.resources import build_resources
from jobping_pipeline.sensors import build_sensor
from jobping_pipeline.settings import Settings, load_settings

EMBED_JOB = "embed_job_chunks"
CHECKS_JOB = "embedding_checks"
CHECKS_CRON = "*/5 * * * *"
DEEP_CHECKS_JOB = "embedding_deep_checks"
DEEP_CHECKS_CRON = "17 * * * *"

K8S_CONFIG_TAG = "dagster-k8s/config"


def run_tags(settings: Settings) -> dict[str, str]:
    """Tags of embedding runs: on Kubernetes, the GPU request of the run's pod."""
    if not settings.k8s_gpus:
        return {}
    gpus = str(settings.k8s_gpus)
    return {
        K8S_CONFIG_TAG: json.dumps(
            {"container_config": {"resources": {"requests": {"nvidia.com/gpu": gpus}, "limits": {"nvidia.com/gpu": gpus}}}}
        )
    }


def build_embed_job(settings: Settings):
    """The job that sensor runs, UI backfills and ``jobping-pipeline backfill`` materialize."""
    # The global checks are left out of embedding runs: mid-backfill they would fail in every run.
    return define_asset_job(
        EMBED_JOB,
        selection=AssetSelection.assets(job_embeddings).without_checks()
        | AssetSelection.checks(AssetCheckKey(job_embeddings.key, CHUNK_CHECK)),
        partitions_def=job_chunks,
        tags=run_tags(settings),
        description="Embed the jobs of one or more chunks (partitions of job_embeddings).",
    )


def _checks(*names: str) -> AssetSelection:
    return AssetSelection.checks(*(AssetCheckKey(job_embeddings.key, name) for name in names))


embedding_checks = define_asset_job(
    CHECKS_JOB,
    selection=_checks(COVERAGE_CHECK),
    description="Coverage of job_embeddings as the pipeline's state records it (cheap at any size).",
)

embedding_checks_schedule = ScheduleDefinition(
    name="embedding_checks_schedule",
    job=embedding_checks,
    cron_schedule=CHECKS_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs the coverage check every 5 minutes.",
)

embedding_deep_checks = define_asset_job(
    DEEP_CHECKS_JOB,
    selection=_checks(DEEP_COVERAGE_CHECK, VECTOR_SANITY_CHECK, VECTOR_AUDIT_CHECK),
    description="Coverage counted from the jobs table itself (it heals what the triggers never saw), "
    "vector sanity, and the vector audit (each fresh job's text and vector checked against what was "
    "recorded, a sample embedded again): every row and every vector is read.",
)

embedding_deep_checks_schedule = ScheduleDefinition(
    name="embedding_deep_checks_schedule",
    job=embedding_deep_checks,
    cron_schedule=DEEP_CHECKS_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Runs the deep coverage, vector sanity and vector audit checks hourly.",
)


def build_definitions(settings: Settings) -> Definitions:
    """Everything Dagster loads, wired to these settings."""
    embed_job_chunks = build_embed_job(settings)
    return Definitions(
        assets=[jobs_table, job_embeddings],
        asset_checks=[table_checks],
        jobs=[embed_job_chunks, embedding_checks, embedding_deep_checks],
        sensors=[build_sensor(embed_job_chunks, settings.sensor_interval_seconds)],
        schedules=[embedding_checks_schedule, embedding_deep_checks_schedule],
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
