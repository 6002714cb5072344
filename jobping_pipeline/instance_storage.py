"""Dagster instance storage that brings up the embedded Postgres before Dagster connects.

``dagster.yaml`` names :class:`JobpingPostgresStorage`. The Dagster CLI, webserver, daemon and
every run process build their instance from that file before any project code runs, so this
class is the one place where the embedded server can be started for all of them. Everything
else is dagster-postgres: run, event-log and schedule storage in one Postgres database.

With ``JOBPING_DAGSTER_DATABASE_URL`` set (or ``postgres_url`` in the config), that database is
used and nothing is started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from dagster import Field, StringSource
from dagster_postgres import DagsterPostgresStorage

from jobping_pipeline.embedded_postgres import DAGSTER_DATABASE, embedded_server_url


def with_psycopg2_driver(url: str) -> str:
    """dagster-postgres is written for psycopg2, but SQLAlchemy 2.1 maps a bare ``postgresql://``
    to psycopg 3, whose server-side parameters break Dagster's ``NOTIFY``: name the driver."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def resolve_dagster_storage_url(configured_url: str | None = None) -> str:
    """The URL of Dagster's storage database: configured, from the environment, or embedded."""
    url = configured_url or os.environ.get("JOBPING_DAGSTER_DATABASE_URL", "").strip()
    if not url:
        data_dir = os.environ.get("JOBPING_DATA_DIR", "").strip()
        url = embedded_server_url(
            Path(data_dir).expanduser().resolve() if data_dir else None, DAGSTER_DATABASE
        )
    return with_psycopg2_driver(url)


class JobpingPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage whose database defaults to the project's embedded server."""

    # inst_data is Dagster's ConfigurableClassData, which is not exported publicly.
    def __init__(self, postgres_url: str, inst_data: Any = None):
        super().__init__(postgres_url=postgres_url, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"postgres_url": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> "JobpingPostgresStorage":
        return cls(
            postgres_url=resolve_dagster_storage_url(config_value.get("postgres_url")),
            inst_data=inst_data,
        )
