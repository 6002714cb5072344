"""jobping-pipeline: keeps vector embeddings of a job board's Postgres jobs table complete and
fresh, as a Dagster code location. ``defs`` is what ``dagster ... -m jobping_pipeline`` loads."""

from jobping_pipeline.definitions import defs

__all__ = ["defs"]
