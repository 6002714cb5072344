import pytest

from jobping_pipeline.settings import (
    DEFAULT_TEXT_COLUMNS,
    SETTINGS,
    ConfigError,
    QualifiedName,
    load_settings,
    parse_qualified_name,
    redact_url,
)


def test_defaults_fit_jobping():
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.jobs_table == QualifiedName("public", "jobs")
    assert settings.id_column == "id"
    assert settings.embedding_column == "embedding"
    assert settings.text_columns == DEFAULT_TEXT_COLUMNS
    assert not settings.text_columns_explicit
    assert settings.chunk_size == 1000
    assert settings.model_name == "sentence-transformers/all-MiniLM-L6-v2"


def test_every_setting_is_read():
    env = {
        "JOBPING_DATABASE_URL": "postgresql://u:p@db:5432/jobs",
        "JOBPING_JOBS_TABLE": "board.postings",
        "JOBPING_ID_COLUMN": "posting_id",
        "JOBPING_EMBEDDING_COLUMN": "vec",
        "JOBPING_TEXT_COLUMNS": "title, body",
        "JOBPING_MODEL": "/models/e5",
        "JOBPING_CHUNK_SIZE": "250",
        "JOBPING_BATCH_SIZE": "16",
        "JOBPING_DEVICE": "cuda:1",
        "JOBPING_MAX_SEQ_LENGTH": "128",
        "JOBPING_STATE_SCHEMA": "embed_state",
        "JOBPING_TEXT_TEMPLATE": "Sentences",
    }
    settings = load_settings(env)
    assert settings.database_url == env["JOBPING_DATABASE_URL"]
    assert settings.jobs_table == QualifiedName("board", "postings")
    assert (settings.id_column, settings.embedding_column) == ("posting_id", "vec")
    assert settings.text_columns == ("title", "body") and settings.text_columns_explicit
    assert (settings.model_name, settings.chunk_size, settings.batch_size) == ("/models/e5", 250, 16)
    assert (settings.device, settings.max_seq_length, settings.state_schema) == ("cuda:1", 128, "embed_state")
    assert settings.text_template == "sentences"
    assert {setting.name for setting in SETTINGS} >= set(env)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"JOBPING_CHUNK_SIZE": "0"}, "JOBPING_CHUNK_SIZE"),
        ({"JOBPING_CHUNK_SIZE": "many"}, "JOBPING_CHUNK_SIZE"),
        ({"JOBPING_BATCH_SIZE": "-3"}, "JOBPING_BATCH_SIZE"),
        ({"JOBPING_DEVICE": "tpu"}, "JOBPING_DEVICE"),
        ({"JOBPING_TEXT_TEMPLATE": "markdown"}, "JOBPING_TEXT_TEMPLATE"),
        ({"JOBPING_TEXT_COLUMNS": "title,title"}, "JOBPING_TEXT_COLUMNS"),
        ({"JOBPING_TEXT_COLUMNS": "title,,body"}, "JOBPING_TEXT_COLUMNS"),
        ({"JOBPING_JOBS_TABLE": "a.b.c"}, "JOBPING_JOBS_TABLE"),
        ({"JOBPING_JOBS_TABLE": 'public."unterminated'}, "JOBPING_JOBS_TABLE"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jobs", QualifiedName("public", "jobs")),
        ("Board.Jobs", QualifiedName("board", "jobs")),
        ('"My Schema"."job ""postings"""', QualifiedName("My Schema", 'job "postings"')),
        ('public."Jobs.2024"', QualifiedName("public", "Jobs.2024")),
    ],
)
def test_table_names_parse_like_postgres(value, expected):
    name = parse_qualified_name(value, "JOBPING_JOBS_TABLE")
    assert name == expected
    assert parse_qualified_name(name.as_setting(), "JOBPING_JOBS_TABLE") == expected


def test_redact_url_hides_passwords():
    assert redact_url("postgresql://bob:s3cret@db:5432/jobs") == "postgresql://bob:***@db:5432/jobs"
    assert "s3cret" not in redact_url("postgresql://db/jobs?user=bob&password=s3cret")
    assert redact_url("postgresql:///jobs?host=/tmp") == "postgresql:///jobs?host=/tmp"
