"""The code location: assets, jobs and resources, configured from the environment."""

from dagster import Definitions, define_asset_job

from jobping_pipeline.assets import job_embeddings
from jobping_pipeline.partitions import job_chunks
from jobping_pipeline.resources import resources_from_settings
from jobping_pipeline.settings import Settings, load_settings

EMBED_JOB = "embed_job_chunks"

embed_job_chunks = define_asset_job(
    EMBED_JOB,
    selection=[job_embeddings],
    partitions_def=job_chunks,
    description="Embed the jobs of one or more chunks (partitions of job_embeddings).",
)


def build_definitions(settings: Settings) -> Definitions:
    """Everything Dagster loads, wired to these settings."""
    return Definitions(
        assets=[job_embeddings],
        jobs=[embed_job_chunks],
        resources=resources_from_settings(settings),
    )


defs = build_definitions(load_settings())
