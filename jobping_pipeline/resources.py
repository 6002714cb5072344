"""Dagster resources: the single source of configuration for the code location and the CLI.

Each field is one ``JOBPING_*`` variable, raw text as the environment gives it, filled as an
``EnvVar`` so the UI shows the variable's name and never its value (a database URL carries a
password). :func:`build_resources` makes them; ``settings()`` and ``spec()`` are the typed,
validated views (:mod:`jobping_pipeline.settings`).
"""

from __future__ import annotations

from typing import Optional

from dagster import ConfigurableResource, EnvVar

from jobping_pipeline.models import Encoder, EncoderSpec, load_encoder, spec_from_settings
from jobping_pipeline.settings import EMBEDDING_MODEL, JOBS_DATABASE, SETTINGS, Settings, load_settings
from jobping_pipeline.store import JobStore


class _FromSettings(ConfigurableResource):
    """Fields named after the settings of one home (see ``Setting.home``)."""

    def settings(self) -> Settings:
        fields = type(self).model_fields
        return load_settings(
            {
                setting.name: getattr(self, setting.field)
                for setting in SETTINGS
                if setting.field in fields and getattr(self, setting.field) is not None
            }
        )


class JobsDatabase(_FromSettings):
    """The Postgres jobs table and the pipeline's state schema beside it. ``database_url`` unset
    means the embedded Postgres under ``data_dir``."""

    database_url: Optional[str] = None
    data_dir: Optional[str] = None
    jobs_table: Optional[str] = None
    id_column: Optional[str] = None
    embedding_column: Optional[str] = None
    text_columns: Optional[str] = None
    chunk_size: Optional[str] = None
    eligible_column: Optional[str] = None
    grace_minutes: Optional[str] = None
    max_attempts: Optional[str] = None
    state_schema: Optional[str] = None

    def store(self) -> JobStore:
        return JobStore(self.settings())


class EmbeddingModel(_FromSettings):
    """A sentence-transformers model or an OpenAI-compatible embeddings API
    (``JOBPING_PROVIDER``), made once per process and shared by every chunk.

    The API key is deliberately not a field: the SDK reads ``OPENAI_API_KEY`` from the
    environment of the process that embeds, so it never becomes run config, metadata or a tag."""

    provider: Optional[str] = None
    model: Optional[str] = None
    dimensions: Optional[str] = None
    api_concurrency: Optional[str] = None
    openai_base_url: Optional[str] = None
    batch_size: Optional[str] = None
    device: Optional[str] = None
    max_seq_length: Optional[str] = None
    precision: Optional[str] = None
    backend: Optional[str] = None
    quantization: Optional[str] = None
    text_template: Optional[str] = None
    model_cache: Optional[str] = None

    def spec(self) -> EncoderSpec:
        """What to load or call; its ``model_id`` needs no model and no request."""
        return spec_from_settings(self.settings())

    def encoder(self) -> Encoder:
        """The process-wide encoder: loaded (or, for an API, probed) on first use."""
        return load_encoder(self.spec())


RESOURCE_CLASSES = {JOBS_DATABASE: JobsDatabase, EMBEDDING_MODEL: EmbeddingModel}


def build_resources(settings: Settings) -> dict[str, ConfigurableResource]:
    """The resources for these settings: a value read from the process environment becomes an
    ``EnvVar`` of its variable, a value given directly (tests, benchmarks) stays literal."""
    resources = {}
    for home, resource_class in RESOURCE_CLASSES.items():
        fields = {}
        for setting in SETTINGS:
            if setting.home != home or setting.name not in settings.raw:
                continue
            fields[setting.field] = EnvVar(setting.name) if settings.from_environment else settings.raw[setting.name]
        resources[home] = resource_class(**fields)
    return resources


def resolved(resource: ConfigurableResource) -> ConfigurableResource:
    """The resource with its ``EnvVar`` fields read, for use outside a Dagster run (the CLI)."""
    return resource.process_config_and_initialize()
