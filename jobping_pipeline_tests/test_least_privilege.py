"""The whole cycle as a role with exactly the grants of docs/operations.md (no CREATE anywhere),
on a table with jobping's row-level security: policies that admit the role pass, policies that
block it fail loudly and keep failing, and rows a policy hides are never taken for covered."""

import itertools
import json
import re

import psycopg
import pytest
from dagster import AssetCheckSeverity

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.checks import evaluate_deep_coverage
from jobping_pipeline.embedding import EmbeddingFailed, embed_chunk
from jobping_pipeline.store import JobStore

from .helpers import PROJECT_DIR, load_demo, make_settings, run_chunks, run_cli, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_roles = itertools.count(1)


def documented_grants(role: str, *, replica_role: bool) -> list[str]:
    """The SQL block of the least-privilege section of docs/operations.md, for ``role``."""
    operations = (PROJECT_DIR / "docs" / "operations.md").read_text()
    section = operations[operations.index("- **Least privilege.**") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    statements = []
    for line in block.splitlines():
        if not line.strip() or line.startswith("--"):
            continue
        statement = line.rstrip(";").replace("jobping_embedder", role).replace("PASSWORD '...'", "")
        if "session_replication_role" in statement and not replica_role:
            continue
        statements.append(statement)
    return statements


def jobping_table_with_row_security(settings, jobs: int) -> None:
    """jobping's shape: RLS on, SELECT for everyone, UPDATE only for service_role; set up by the owner."""
    load_demo(settings, jobs).setup(384)
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_roles WHERE rolname = 'service_role'").fetchone():
            connection.execute("CREATE ROLE service_role")
        connection.execute("ALTER TABLE jobs ENABLE ROW LEVEL SECURITY")
        connection.execute("CREATE POLICY read_all ON jobs FOR SELECT USING (true)")
        connection.execute("CREATE POLICY service_updates ON jobs FOR UPDATE TO service_role USING (true)")


def embedding_role(database_url: str, *, replica_role: bool = False, with_policy: bool) -> str:
    """A role with the grants of docs/operations.md; without ``with_policy`` its UPDATE policy is left out."""
    role = f"embedder_{next(_roles)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        for statement in documented_grants(role, replica_role=replica_role):
            if "CREATE POLICY" in statement and not with_policy:
                continue
            connection.execute(statement)
    return database_url.replace("postgresql://postgres:@", f"postgresql://{role}@", 1)


@pytest.mark.parametrize("replica_role", [False, True])
def test_the_documented_grants_run_the_whole_cycle_under_row_level_security(
    database_url, encoder, instance, data_dir, dagster_home, replica_role
):
    jobping_table_with_row_security(make_settings(database_url), 25)
    role_url = embedding_role(database_url, replica_role=replica_role, with_policy=True)
    env = {"JOBPING_DATABASE_URL": role_url, "JOBPING_CHUNK_SIZE": "10"}
    with psycopg.connect(database_url) as connection:
        before = connection.execute("SELECT id, updated_at FROM jobs ORDER BY id").fetchall()
    role_settings = make_settings(role_url, JOBPING_CHUNK_SIZE="10")
    if replica_role:  # the command line once, for its exit codes; the other variant in-process
        backfill = run_cli("jobping-pipeline", "backfill", env=env)
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr[-3000:]
        assert backfill.stdout.strip().splitlines()[-1].startswith("coverage 100.00%: 25 of 25")
        status = run_cli("jobping-pipeline", "status", "--json", env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["complete"] is True
    else:
        assert run_backfill(role_settings, instance, say=lambda line: None).complete
    with psycopg.connect(database_url) as connection:
        after = connection.execute("SELECT id, updated_at FROM jobs ORDER BY id").fetchall()
    assert (after == before) is replica_role, "without the SET grant the table's own trigger fires"
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("INSERT INTO jobs (title, company) VALUES ('Glazier', 'Glas & Co')")
    result = tick(role_settings, instance)
    run_chunks(role_settings, instance, result)
    assert evaluate_deep_coverage(JobStore(role_settings), MODEL_ID).passed
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with psycopg.connect(role_url) as restricted:
            restricted.execute("UPDATE jobs SET title = 'x'")


def test_a_policy_that_blocks_updates_fails_loudly_and_keeps_failing(database_url, encoder, data_dir, dagster_home):
    jobping_table_with_row_security(make_settings(database_url), 15)
    role_url = embedding_role(database_url, with_policy=False)
    env = {"JOBPING_DATABASE_URL": role_url, "JOBPING_CHUNK_SIZE": "10"}
    backfill = run_cli("jobping-pipeline", "backfill", env=env)
    assert backfill.returncode == 1
    assert "row-level security on public.jobs does not let role embedder_" in backfill.stderr
    assert "coverage 0.00%: 0 of 15" in backfill.stdout
    status = run_cli("jobping-pipeline", "status", "--json", env=env)
    report = json.loads(status.stdout)
    assert status.returncode == 1 and report["complete"] is False
    assert (report["failed"], report["chunks_done"], report["jobs_to_do"]) == (15, 0, 15)
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT count(*) FROM jobping_pipeline.job_state").fetchone() == (15,)


def test_rows_hidden_from_the_role_are_neither_forgotten_nor_covered(database_url, encoder, instance):
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10")
    jobping_table_with_row_security(settings, 12)
    role_url = embedding_role(database_url, with_policy=True)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("DROP POLICY read_all ON jobs")
        connection.execute("CREATE POLICY read_some ON jobs FOR SELECT USING (id <= 4)")
    role_store = JobStore(make_settings(role_url, JOBPING_CHUNK_SIZE="10"))
    role_store.register_chunks(scan_table=False)
    coverage = role_store.coverage(MODEL_ID)
    assert (coverage.eligible, coverage.hidden, coverage.complete) == (4, 8, False)
    fast = role_store.state_coverage(MODEL_ID)  # what status and the backfill's exit code count
    assert (fast.hidden, fast.complete) == (8, False)
    check = evaluate_deep_coverage(role_store, MODEL_ID)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["hidden_by_row_security"].value == 8
    with pytest.raises(EmbeddingFailed, match=r"6 jobs \(5, 6, 7, 8, 9, 10\): row-level security on public.jobs hides"):
        embed_chunk(role_store, encoder, "000001", batch_size=8)
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT count(*) FROM jobping_pipeline.job_state").fetchone() == (12,)
        assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NOT NULL").fetchone() == (4,)
    assert not role_store.coverage(MODEL_ID).complete
