"""Through a transaction-mode pooler (PgBouncer, as in front of hosted Postgres): every
transaction may land on another backend, so nothing the pipeline relies on may be session
state. The chunk lock and the trigger-skipping write setting must still hold. Runs a real
PgBouncer (Debian package `pgbouncer`, which .ci/run installs)."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.embedding import embed_chunk
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
pytestmark = pytest.mark.skipif(
    not os.path.exists(PGBOUNCER), reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)"
)


@pytest.fixture
def pooled_url(database_url):
    """``database_url`` through a PgBouncer in transaction mode."""
    parsed = urlparse(database_url)
    socket_dir = parse_qs(parsed.query)["host"][0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="pgbouncer-")
    os.chmod(folder, 0o755)
    config = os.path.join(folder, "pgbouncer.ini")
    with open(config, "w") as ini:
        ini.write(
            f"[databases]\n* = host={socket_dir} user=postgres\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 50\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
    os.chmod(config, 0o644)
    as_user = ["-u", "pgserver"] if os.geteuid() == 0 else []  # PgBouncer refuses to run as root
    bouncer = subprocess.Popen([PGBOUNCER, *as_user, config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"postgresql://postgres@127.0.0.1:{port}{parsed.path}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            time.sleep(0.2)
    yield url
    bouncer.terminate()
    bouncer.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_backfill_through_a_transaction_pooler(database_url, pooled_url, encoder, instance):
    load_demo(make_settings(database_url), 30)
    with psycopg.connect(database_url) as connection:
        before = connection.execute("SELECT id, updated_at FROM jobs ORDER BY id").fetchall()
    settings = make_settings(pooled_url, JOBPING_CHUNK_SIZE="10")
    result = run_backfill(settings, instance, say=lambda line: None)
    assert result.complete and result.jobs_embedded == 30
    with psycopg.connect(database_url) as connection:
        after = connection.execute("SELECT id, updated_at FROM jobs ORDER BY id").fetchall()
    assert after == before, "the table's own updated_at trigger must not fire on embedding writes"


def test_the_chunk_lock_holds_through_a_transaction_pooler(database_url, pooled_url, encoder):
    settings = make_settings(pooled_url, JOBPING_CHUNK_SIZE="10")
    store = load_demo(settings, 10)
    store.setup(384)
    store.register_chunks(scan_table=False)
    reports = []
    with store.chunk_lock("000001"):
        worker = threading.Thread(target=lambda: reports.append(embed_chunk(JobStore(settings), encoder, "000001", 4)))
        worker.start()
        time.sleep(1.5)
        with psycopg.connect(database_url) as connection:
            assert connection.execute("SELECT count(*) FROM jobs WHERE embedding IS NOT NULL").fetchone() == (0,)
        assert worker.is_alive(), "a second run of the chunk waits for the lock"
    worker.join(60)
    assert reports and reports[0].embedded == 10
