"""One configuration path: the environment fills the resources as EnvVars; the code location and
the command line build the same resources; Settings is the typed view of them."""

from dagster import EnvVar

from jobping_pipeline.definitions import build_definitions
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase, build_resources, resolved
from jobping_pipeline.settings import DEFINITIONS, EMBEDDING_MODEL, INSTANCE, JOBS_DATABASE, SETTINGS, load_settings

SECRET_URL = "postgresql://bob:hunter2@db:5432/jobs"


def test_every_setting_has_one_home_and_each_resource_field_is_a_setting():
    homes = {JOBS_DATABASE: JobsDatabase, EMBEDDING_MODEL: EmbeddingModel}
    for home, resource_class in homes.items():
        declared = set(resource_class.model_fields)
        assert declared == {setting.field for setting in SETTINGS if setting.home == home}
    assert {setting.home for setting in SETTINGS} == {JOBS_DATABASE, EMBEDDING_MODEL, DEFINITIONS, INSTANCE}


def test_the_environment_becomes_env_vars_and_never_values(monkeypatch):
    monkeypatch.setenv("JOBPING_DATABASE_URL", SECRET_URL)
    monkeypatch.setenv("JOBPING_CHUNK_SIZE", "250")
    monkeypatch.setenv("JOBPING_BATCH_SIZE", "16")
    resources = build_definitions(load_settings()).resources
    database, model = resources["jobs_database"], resources["embedding_model"]
    assert database.database_url == EnvVar("JOBPING_DATABASE_URL")
    assert "hunter2" not in repr(database) and "hunter2" not in repr(model)
    assert resolved(database).settings().chunk_size == 250
    assert resolved(database).settings().database_url == SECRET_URL
    assert resolved(model).settings().batch_size == 16


def test_literal_settings_stay_literal_and_unset_ones_take_defaults():
    settings = load_settings({"JOBPING_DATABASE_URL": SECRET_URL, "JOBPING_MODEL": "/models/e5"})
    resources = build_resources(settings)
    assert resources["jobs_database"].database_url == SECRET_URL
    assert resources["jobs_database"].chunk_size is None
    assert resources["jobs_database"].settings().chunk_size == 1000
    assert resources["embedding_model"].spec().name == "/models/e5"
