"""End to end through the real services: dagster-webserver and dagster-daemon on the project's
instance config (Postgres storage), a partition backfill launched through the webserver's
GraphQL API the way the UI's Materialize button does, then the sensor catching new and edited
jobs by itself. The test starts and stops those processes itself."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from jobping_pipeline.store import JobStore
from jobping_pipeline.partitions import JOB_CHUNKS

from .helpers import PROJECT_DIR, load_demo, make_settings, run_cli

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status }
  }
}"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body
    return body["data"]


def wait_for(condition, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    executable = str(Path(sys.executable).parent / command[0])
    return subprocess.Popen(
        [executable, *command[1:]],
        env=env,
        cwd=PROJECT_DIR,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.slow
def test_ui_backfill_then_sensor_keep_coverage_at_100(database_url, admin_url, tmp_path, monkeypatch):
    dagster_db = f"dagster_e2e_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{dagster_db}"')
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_DIR / "dagster.yaml").read_text())
    env_overrides = {
        "DAGSTER_HOME": str(home),
        "JOBPING_DATABASE_URL": database_url,
        "JOBPING_DAGSTER_DATABASE_URL": admin_url.replace("/postgres?", f"/{dagster_db}?", 1),
        "JOBPING_CHUNK_SIZE": "25",
        "JOBPING_SENSOR_INTERVAL_SECONDS": "5",
        "JOBPING_GRACE_MINUTES": "0",
    }
    for key, value in env_overrides.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="25", JOBPING_GRACE_MINUTES="0")
    load_demo(settings, 60)
    registered = run_cli("jobping-pipeline", "register")
    assert registered.returncode == 0, registered.stderr
    assert "3 chunks (3 new), keys 000001 to 000003" in registered.stdout

    port = free_port()
    webserver = start(
        ["dagster-webserver", "-m", "jobping_pipeline", "-h", "127.0.0.1", "-p", str(port)],
        env, tmp_path / "webserver.log",
    )
    daemon = None
    try:
        def webserver_up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    return True
            except OSError:
                assert webserver.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                return False

        wait_for(webserver_up, 120, "the webserver")
        launched = graphql(port, LAUNCH_BACKFILL, {
            "backfillParams": {
                "assetSelection": [{"path": ["job_embeddings"]}],
                "partitionNames": ["000001", "000002", "000003"],
                "fromFailure": False,
            }
        })["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        daemon = start(["dagster-daemon", "run", "-m", "jobping_pipeline"], env, tmp_path / "daemon.log")

        def backfill_done():
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            status = graphql(port, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]["status"]
            return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None

        assert wait_for(backfill_done, 400, "the backfill", interval=3) == "COMPLETED_SUCCESS"
        store = JobStore(settings)
        coverage = store.coverage(MODEL_ID)
        assert (coverage.eligible, coverage.fresh, coverage.percent) == (60, 60, 100.0)

        with DagsterInstance.get() as instance:
            backfill_runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
            assert len(backfill_runs) == 1, "3 chunks share one run (BackfillPolicy): one model load"
            checks_in_backfill = {
                record.get_dagster_event().asset_check_evaluation_data.check_name
                for record in instance.all_logs(
                    backfill_runs[0].run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
                )
            }
            assert checks_in_backfill == {"chunk_embeddings_fresh"}, "global checks skip embedding runs"
            assert not instance.get_runs(RunsFilter(tags={"jobping/trigger": "sensor"})), (
                "the sensor must not request chunks that a requested backfill covers"
            )

        launched_checks = graphql(port, LAUNCH_RUN, {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": "jobping_pipeline",
                    "repositoryName": "__repository__",
                    "jobName": "embedding_deep_checks",
                },
                "runConfigData": {},
            }
        })["launchRun"]
        assert launched_checks["__typename"] == "LaunchRunSuccess", launched_checks
        check_run_id = launched_checks["run"]["runId"]
        with DagsterInstance.get() as instance:
            def check_run_finished():
                run = instance.get_run_by_id(check_run_id)
                return run if run.is_finished else None

            assert wait_for(check_run_finished, 180, "the check run").status == DagsterRunStatus.SUCCESS
            evaluations = {
                record.get_dagster_event().asset_check_evaluation_data.check_name:
                record.get_dagster_event().asset_check_evaluation_data.passed
                for record in instance.all_logs(check_run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            }
            assert evaluations == {"deep_coverage": True, "vector_sanity": True, "vector_audit": True}

        with psycopg.connect(database_url, autocommit=True) as connection:
            before = connection.execute("SELECT embedding::text FROM jobs WHERE id = 10").fetchone()[0]
            connection.execute(
                "INSERT INTO jobs (title, company, description) SELECT 'Warehouse operative ' || g, "
                "'Hafen Logistik', 'Forklift licence required.' FROM generate_series(1, 5) g"
            )
            connection.execute("UPDATE jobs SET description = 'Now a fully remote role.' WHERE id = 10")

        def covered_again():
            current = store.coverage(MODEL_ID)
            return current.eligible == 65 and current.fresh == 65

        wait_for(covered_again, 300, "the sensor's runs", interval=3)
        with psycopg.connect(database_url) as connection:
            assert connection.execute("SELECT embedding::text FROM jobs WHERE id = 10").fetchone()[0] != before
        with DagsterInstance.get() as instance:
            assert instance.get_dynamic_partitions(JOB_CHUNKS)[-1] == "000003", "new jobs fill the newest chunk"
            def sensor_runs_finished():
                runs = instance.get_runs(RunsFilter(tags={"jobping/trigger": "sensor"}))
                return runs if all(run.is_finished for run in runs) else None

            sensor_runs = wait_for(sensor_runs_finished, 120, "the sensor's runs to finish")
            assert [run.tags["jobping/chunks"] for run in sensor_runs] == ["000001,000003"], (
                "the two dirty chunks in one partition-range run, no duplicates"
            )
            assert (sensor_runs[0].tags["dagster/asset_partition_range_start"], sensor_runs[0].tags["dagster/asset_partition_range_end"]) == ("000001", "000003")
            assert [run.status for run in sensor_runs] == [DagsterRunStatus.SUCCESS]
    finally:
        if daemon is not None:
            stop(daemon)
        stop(webserver)


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on ``port``, read from the kernel's tables."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    if len(address) == 8:
                        addresses.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                    else:
                        words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                        addresses.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return addresses


@pytest.mark.slow
def test_make_ui_listens_on_loopback_only(dagster_home, tmp_path):
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PORT": str(port)}
    env.pop("HOST", None)
    ui = subprocess.Popen(
        ["make", "--no-print-directory", "ui"],
        env=env,
        cwd=PROJECT_DIR,
        stdout=(tmp_path / "ui.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: listening_addresses(port), 180, "the webserver to listen", interval=1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
            assert response.status == 200
        assert listening_addresses(port) == {"127.0.0.1"}, (tmp_path / "ui.log").read_text()[-2000:]
    finally:
        stop(ui)
