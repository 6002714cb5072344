"""Dagster resources: thin wrappers that turn configuration into a JobStore and an Encoder."""

from __future__ import annotations

import os
from typing import Optional

from dagster import ConfigurableResource, EnvVar

from jobping_pipeline.database import JobStore
from jobping_pipeline.encoder import Encoder, ModelSpec, load_encoder
from jobping_pipeline.settings import BUNDLED_MODEL, Settings, load_settings


class JobsDatabase(ConfigurableResource):
    """The Postgres jobs table and the pipeline's state schema beside it.

    ``database_url`` unset means the embedded Postgres under ``data_dir``."""

    database_url: Optional[str] = None
    data_dir: Optional[str] = None
    jobs_table: str = "public.jobs"
    id_column: str = "id"
    embedding_column: str = "embedding"
    text_columns: Optional[str] = None
    chunk_size: int = 1000
    state_schema: str = "jobping_pipeline"
    eligible_column: Optional[str] = None
    grace_minutes: int = 5
    max_attempts: int = 3

    def settings(self) -> Settings:
        return load_settings(
            {
                "JOBPING_DATABASE_URL": self.database_url or "",
                "JOBPING_DATA_DIR": self.data_dir or "",
                "JOBPING_JOBS_TABLE": self.jobs_table,
                "JOBPING_ID_COLUMN": self.id_column,
                "JOBPING_EMBEDDING_COLUMN": self.embedding_column,
                "JOBPING_TEXT_COLUMNS": self.text_columns or "",
                "JOBPING_CHUNK_SIZE": str(self.chunk_size),
                "JOBPING_STATE_SCHEMA": self.state_schema,
                "JOBPING_ELIGIBLE_COLUMN": self.eligible_column or "",
                "JOBPING_GRACE_MINUTES": str(self.grace_minutes),
                "JOBPING_MAX_ATTEMPTS": str(self.max_attempts),
            }
        )

    def store(self) -> JobStore:
        return JobStore(self.settings())


class EmbeddingModel(ConfigurableResource):
    """A sentence-transformers model, loaded once per process and shared by every chunk."""

    model: str = BUNDLED_MODEL
    device: str = "auto"
    max_seq_length: Optional[int] = None
    precision: str = "auto"
    batch_size: int = 64

    def spec(self) -> ModelSpec:
        return ModelSpec(
            name=self.model, device=self.device, max_seq_length=self.max_seq_length, precision=self.precision
        )

    def encoder(self) -> Encoder:
        return load_encoder(self.spec())


def resources_from_settings(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources for these settings. A database URL that came from the environment is passed
    as an ``EnvVar``, so the UI shows the variable's name, never the credentials in it."""
    database_url = settings.database_url
    if database_url and os.environ.get("JOBPING_DATABASE_URL", "").strip() == database_url:
        database_url = EnvVar("JOBPING_DATABASE_URL")
    return {
        "jobs_database": JobsDatabase(
            database_url=database_url,
            data_dir=str(settings.data_dir) if settings.data_dir else None,
            jobs_table=settings.jobs_table.as_setting(),
            id_column=settings.id_column,
            embedding_column=settings.embedding_column,
            text_columns=",".join(settings.text_columns) if settings.text_columns_explicit else None,
            chunk_size=settings.chunk_size,
            state_schema=settings.state_schema,
            eligible_column=settings.eligible_column,
            grace_minutes=settings.grace_minutes,
            max_attempts=settings.max_attempts,
        ),
        "embedding_model": EmbeddingModel(
            model=settings.model_name,
            device=settings.device,
            max_seq_length=settings.max_seq_length,
            precision=settings.precision,
            batch_size=settings.batch_size,
        ),
    }
