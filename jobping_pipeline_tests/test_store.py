"""Setup, the chunk registry and change capture, on a real Postgres with pgvector."""

import psycopg
import pytest

from jobping_pipeline.demo import generate_jobs, load_demo_jobs
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.settings import ConfigError
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

CATALOG_SNAPSHOT = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname IN ('public', 'jobping_pipeline')
UNION ALL SELECT tgname, pg_get_triggerdef(t.oid), '' FROM pg_trigger t WHERE NOT tgisinternal
UNION ALL SELECT proname, md5(prosrc), '' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = 'jobping_pipeline'
UNION ALL SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), '' FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname IN ('public', 'jobping_pipeline')
ORDER BY 1, 2, 3
"""


def test_setup_is_idempotent(settings):
    store = load_demo(settings, 30)
    first = store.setup(384)
    assert any("vector(384)" in change for change in first)
    assert any("created schema" in change for change in first)
    with psycopg.connect(settings.database_url) as connection:
        before = connection.execute(CATALOG_SNAPSHOT).fetchall()
        state_before = connection.execute("SELECT * FROM jobping_pipeline.job_state ORDER BY job_id").fetchall()
    assert store.setup(384) == []
    with psycopg.connect(settings.database_url) as connection:
        assert connection.execute(CATALOG_SNAPSHOT).fetchall() == before
        assert connection.execute("SELECT * FROM jobping_pipeline.job_state ORDER BY job_id").fetchall() == state_before


def test_setup_refuses_a_column_of_another_dimension(settings):
    store = load_demo(settings, 5)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION vector")
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding vector(768)")
    with pytest.raises(ConfigError) as raised:
        store.setup(384)
    message = str(raised.value)
    assert "384" in message and "vector(768)" in message and "JOBPING_MODEL" in message
    with psycopg.connect(settings.database_url) as connection:
        assert connection.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'jobping_pipeline'"
        ).fetchone() == (0,)


def test_setup_refuses_a_column_that_is_not_a_vector(settings):
    store = load_demo(settings, 5)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE jobs ADD COLUMN embedding real[]")
    with pytest.raises(ConfigError, match="JOBPING_EMBEDDING_COLUMN"):
        store.setup(384)


def test_missing_table_and_columns_are_named(database_url):
    with pytest.raises(ConfigError, match="JOBPING_JOBS_TABLE"):
        JobStore(make_settings(database_url)).inspect()
    load_demo(make_settings(database_url), 3)
    with pytest.raises(ConfigError, match="JOBPING_ID_COLUMN"):
        JobStore(make_settings(database_url, JOBPING_ID_COLUMN="job_id")).inspect()
    with pytest.raises(ConfigError, match="JOBPING_TEXT_COLUMNS names salary"):
        JobStore(make_settings(database_url, JOBPING_TEXT_COLUMNS="title,salary")).inspect()


@pytest.mark.parametrize("id_type", ["integer", "uuid"])
def test_chunks_are_fixed_sets_in_key_order(database_url, id_type):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="40")
    store = load_demo(settings, 100, id_type=id_type)
    store.setup(384)
    assert store.register_chunks(scan_table=True) == ["000001", "000002", "000003"]
    assert store.register_chunks(scan_table=True) == []
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT c.chunk_key, s.job_id FROM jobping_pipeline.job_state s "
            "JOIN jobping_pipeline.chunks c USING (chunk_no) ORDER BY s.job_id"
        ).fetchall()
    assert [key for key, _ in rows] == ["000001"] * 40 + ["000002"] * 40 + ["000003"] * 20
    load_demo_jobs(store, generate_jobs(25, seed=9))
    assert store.register_chunks(scan_table=False) == ["000004"], "20 fill chunk 3, the next 5 open chunk 4"
    with psycopg.connect(database_url) as connection:
        assert connection.execute(
            "SELECT chunk_no, count(*) FROM jobping_pipeline.job_state GROUP BY chunk_no ORDER BY chunk_no"
        ).fetchall() == [(1, 40), (2, 40), (3, 40), (4, 5)]
        assert connection.execute("SELECT job_count FROM jobping_pipeline.chunks ORDER BY chunk_no").fetchall() == [
            (40,), (40,), (40,), (5,)
        ]


def test_change_capture_marks_only_text_changes(settings):
    store = load_demo(settings, 10)
    store.setup(384)
    store.register_chunks(scan_table=True)
    versions = "SELECT job_id, text_version FROM jobping_pipeline.job_state ORDER BY job_id"
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        before = dict(connection.execute(versions).fetchall())
        connection.execute("UPDATE jobs SET updated_at = now() + interval '1 day'")
        connection.execute("UPDATE jobs SET is_active = NOT is_active")
        with connection.transaction():  # a write of the embedding by the pipeline: marked as its own
            connection.execute("SET LOCAL jobping.vector_write = 'on'")
            connection.execute("UPDATE jobs SET embedding = array_fill(0.1, ARRAY[384])::vector")
        connection.execute("UPDATE jobs SET title = title")
        assert dict(connection.execute(versions).fetchall()) == before
        connection.execute("UPDATE jobs SET embedding = array_fill(0.2, ARRAY[384])::vector WHERE id = 6")
        assert {job for job, version in connection.execute(versions) if version != before[job]} == {6}, (
            "a vector written by anyone else is not the pipeline's: due again"
        )
        before = dict(connection.execute(versions).fetchall())
        connection.execute("UPDATE jobs SET description = 'rewritten' WHERE id = 3")
        connection.execute("UPDATE jobs SET categories = array_append(categories, 'New') WHERE id = 4")
        after = dict(connection.execute(versions).fetchall())
        assert {job for job in after if after[job] != before[job]} == {3, 4}
        connection.execute("DELETE FROM jobs WHERE id = 5")
        assert 5 not in dict(connection.execute(versions).fetchall())


def test_pgvector_in_an_extensions_schema_off_the_search_path(database_url, encoder):
    """Supabase's layout: pgvector in schema "extensions", which the role's search_path lacks."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA extensions")
        connection.execute("CREATE EXTENSION vector SCHEMA extensions")
        assert "extensions" not in connection.execute("SHOW search_path").fetchone()[0]
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    store = load_demo(settings, 8)
    store.setup(384)
    store.register_chunks(scan_table=False)
    report = embed_chunk(store, encoder, "000001", batch_size=4)
    assert report.embedded == 8 and store.coverage(MODEL_ID).complete
    with psycopg.connect(database_url) as connection:
        assert connection.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'jobs'::regclass AND attname = 'embedding'"
        ).fetchone() == ("extensions.vector(384)",)


def test_setup_refuses_an_id_column_without_a_unique_index(database_url):
    settings = make_settings(database_url)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE jobs (id integer, title text)")
        connection.execute("INSERT INTO jobs VALUES (1, 'Cook'), (1, 'Baker')")
    with pytest.raises(ConfigError, match="JOBPING_ID_COLUMN='id': public.jobs has no unique index on id alone"):
        JobStore(settings).setup(384)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM jobs WHERE title = 'Baker'")
        connection.execute("CREATE UNIQUE INDEX jobs_id ON jobs (id)")
    assert JobStore(settings).setup(384)


def test_forgetting_a_deleted_job_keeps_it_when_it_is_back(settings):
    store = load_demo(settings, 3)
    store.setup(384)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        connection.execute("DELETE FROM jobs WHERE id IN (1, 2)")
        connection.execute("INSERT INTO jobs (id, title, company) VALUES (2, 'Back again', 'Acme')")
        with store.connect() as writer:
            store.forget_jobs(writer, [1, 2])  # a run that saw both gone, after the re-insert committed
        remaining = [row[0] for row in connection.execute("SELECT job_id FROM jobping_pipeline.job_state ORDER BY 1")]
    assert remaining == [2, 3]


@pytest.mark.parametrize(
    ("column_type", "value", "edited"),
    [
        ("json[]", "ARRAY['{\"a\": 1}']::json[]", "ARRAY['{\"a\": 2}']::json[]"),
        ("json_domain", "'{\"a\": 1}'::json", "'{\"a\": 2}'::json"),
        ("point", "point(1, 2)", "point(1, 3)"),
    ],
)
def test_text_columns_of_any_type_are_compared_without_breaking_the_applications_writes(database_url, column_type, value, edited):
    load_demo(make_settings(database_url), 0)
    settings = make_settings(database_url, JOBPING_TEXT_COLUMNS="title,details")
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE DOMAIN json_domain AS json")
        connection.execute(f"ALTER TABLE jobs ADD COLUMN details {column_type}")
        connection.execute(f"INSERT INTO jobs (id, title, company, details) VALUES (1, 'Cook', 'Inn', {value})")
    store = JobStore(settings)
    store.setup(384)
    with psycopg.connect(database_url, autocommit=True) as connection:
        before = connection.execute("SELECT text_version FROM jobping_pipeline.job_state").fetchone()[0]
        connection.execute("UPDATE jobs SET company = 'Other inn'")
        assert connection.execute("SELECT text_version FROM jobping_pipeline.job_state").fetchone()[0] == before
        connection.execute(f"UPDATE jobs SET details = {edited}")
        assert connection.execute("SELECT text_version FROM jobping_pipeline.job_state").fetchone()[0] > before


def test_a_run_that_read_the_text_columns_before_a_switch_writes_nothing(settings, encoder):
    from jobping_pipeline.store.writes import ConfigurationChanged

    store = load_demo(settings, 12)
    store.setup(384)
    store.register_chunks(scan_table=False)
    store.inspect()  # the run's view of the configuration: the default text columns
    narrower = JobStore(make_settings(settings.database_url, JOBPING_CHUNK_SIZE="40", JOBPING_TEXT_COLUMNS="title,description"))
    assert any("text columns changed" in change for change in narrower.setup(384))
    with pytest.raises(ConfigurationChanged, match="text_columns 'title,description'"):
        embed_chunk(store, encoder, "000001", batch_size=8)
    assert narrower.state_coverage(MODEL_ID).fresh == 0
    with psycopg.connect(settings.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NOT NULL").fetchone()[0] == 0
