"""Shared fixtures: one embedded Postgres for the session, a fresh database per test, the real
model loaded once, and a Dagster home on the project's own instance config."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from jobping_pipeline.embedded_postgres import embedded_server_url
from jobping_pipeline.models import Encoder, ModelSpec, load_encoder
from jobping_pipeline.settings import Settings

from .helpers import PROJECT_DIR, make_settings

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The embedded server's folder for this session; subprocesses find it through the env."""
    path = tmp_path_factory.mktemp("jobping-data")
    os.environ["JOBPING_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def admin_url(data_dir) -> str:
    return embedded_server_url(data_dir, "postgres")


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory, data_dir) -> Path:
    """A DAGSTER_HOME holding the project's own dagster.yaml (Postgres storage, embedded)."""
    home = tmp_path_factory.mktemp("dagster-home")
    shutil.copy(PROJECT_DIR / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@pytest.fixture
def database_url(admin_url) -> str:
    """A new, empty database on the embedded server for one test."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def settings(database_url) -> Settings:
    return make_settings(database_url, JOBPING_CHUNK_SIZE="40")


@pytest.fixture
def instance():
    """A Dagster instance of its own for one test (in memory)."""
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder(ModelSpec())


@pytest.fixture(scope="session", autouse=True)
def one_measurement_round():
    """The backend measurement (models/choice.py) is one round in the tests, not three: its
    mechanics are tested on a fake clock (test_models_choice.py), and this keeps the first model
    load of a fresh CI machine short (the CLI's subprocesses then read the cached choice). A
    machine that ran the tests keeps that choice until `jobping-pipeline backends --measure`."""
    from jobping_pipeline.models import choice

    rounds, choice.MAX_ROUNDS = choice.MAX_ROUNDS, 1
    yield
    choice.MAX_ROUNDS = rounds
