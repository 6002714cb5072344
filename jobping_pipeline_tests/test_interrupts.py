"""SIGTERM (the seed operator's `kill -TERM`) and Ctrl-C stop `jobping-pipeline backfill` at a
batch boundary: what was committed stays, nothing is half-written, and it says so."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from .helpers import PROJECT_DIR, load_demo, make_settings

CONSISTENT = """
SELECT count(*) FILTER (WHERE j.embedding IS NOT NULL),
       count(*) FILTER (WHERE j.embedding IS NOT NULL AND s.embedded_version = s.text_version),
       count(*) FILTER (WHERE j.embedding IS NULL AND s.embedded_version IS NOT NULL)
FROM jobs j JOIN jobping_pipeline.job_state s ON s.job_id = j.id
"""


def test_sigterm_stops_the_backfill_at_a_batch_boundary(database_url, data_dir, dagster_home):
    # Ten chunks: the model, at most one chunk ahead of the runs, still has most of them to
    # encode when the first is written. (Two chunks were both encoded before the first run
    # began, and the runs then wrote all of them before the signal came.)
    load_demo(make_settings(database_url), 400).setup(384)
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "40", "JOBPING_BATCH_SIZE": "4"}
    command = [str(Path(sys.executable).parent / "jobping-pipeline"), "backfill"]
    backfill = subprocess.Popen(
        command, env={**os.environ, **env}, cwd=PROJECT_DIR, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    with psycopg.connect(database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            if connection.execute(
                "SELECT count(*) FROM jobping_pipeline.job_state WHERE embedded_version IS NOT NULL"
            ).fetchone()[0] >= 32:
                break
            time.sleep(0.2)
    backfill.send_signal(signal.SIGTERM)  # Ctrl-C (SIGINT) takes the same path
    stdout, stderr = backfill.communicate(timeout=120)
    assert backfill.returncode == 130, stdout + stderr[-3000:]
    assert "stopped by a signal" in stderr and "committed" in stderr
    assert "Traceback" not in stderr
    with psycopg.connect(database_url) as connection:
        with_vector, fresh, recorded_without_vector = connection.execute(CONSISTENT).fetchone()
    assert 32 <= with_vector < 400, "stopped part-way"
    assert with_vector == fresh and recorded_without_vector == 0, "every written vector has its state, and only those"
    again = subprocess.run(command, env={**os.environ, **env}, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1].startswith("coverage 100.00%: 400 of 400")
