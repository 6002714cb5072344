"""The command line and the Dagster CLI as a user runs them: subprocesses on the project's
instance config (dagster-postgres storage on the embedded server)."""

import json
import sys
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from jobping_pipeline.cli import describe_fault
from jobping_pipeline.embedded_postgres import JOBS_DATABASE, embedded_server_url
from jobping_pipeline.faults import InfrastructureFault
from jobping_pipeline.models.openai_protocol import ApiRequestRefused, ApiUnavailable
from jobping_pipeline.store import DatabaseUnavailable, JobStore
from jobping_pipeline.partitions import JOB_CHUNKS

from .helpers import load_demo, make_settings, run_cli

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.slow
def test_demo_backfill_then_materialize_one_partition(data_dir, dagster_home):
    env = {"JOBPING_CHUNK_SIZE": "25", "JOBPING_DATABASE_URL": ""}
    with DagsterInstance.get() as instance:  # the session's instance: other tests' runs are in it too
        earlier_runs = {run.run_id for run in instance.get_runs()}
    demo = run_cli("jobping-pipeline", "demo-data", "--jobs", "60", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "loaded 60 jobs" in demo.stdout

    backfill = run_cli("jobping-pipeline", "backfill", env=env)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert "[3/3] chunk 000003" in backfill.stdout
    assert backfill.stdout.strip().splitlines()[-1].startswith("coverage 100.00%: 60 of 60")

    with psycopg.connect(embedded_server_url(data_dir, JOBS_DATABASE)) as connection:
        chunk_keys = [key for (key,) in connection.execute("SELECT chunk_key FROM jobping_pipeline.chunks ORDER BY chunk_no")]
        connection.execute("UPDATE jobs SET title = 'Head of Data' WHERE id = 30")
        connection.commit()
    assert chunk_keys == ["000001", "000002", "000003"]
    materialize = run_cli(
        "dagster", "asset", "materialize", "-m", "jobping_pipeline",
        "--select", "job_embeddings", "--partition", "000002", env=env,
    )
    assert materialize.returncode == 0, materialize.stderr[-3000:]
    assert "RUN_SUCCESS" in materialize.stderr

    with DagsterInstance.get() as instance:
        # The session's instance: keys of other tests' tables may be there too, whatever the order.
        assert set(chunk_keys) <= set(instance.get_dynamic_partitions(JOB_CHUNKS))
        runs = [
            run for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
            if run.run_id not in earlier_runs
        ]
        assert len(runs) == 2, "the backfill's 3 chunks in one range run, then the CLI's materialize"
        assert [run.tags.get("dagster/partition") for run in runs] == ["000002", None]
        assert runs[1].tags["dagster/asset_partition_range_end"] == "000003"

    again = run_cli("jobping-pipeline", "backfill", env=env)
    assert again.returncode == 0
    assert "0 with pending work" in again.stdout


def test_configuration_errors_are_one_line_and_name_the_setting(data_dir, database_url):
    result = run_cli("jobping-pipeline", "backfill", env={"JOBPING_CHUNK_SIZE": "0"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "jobping-pipeline: configuration error: JOBPING_CHUNK_SIZE='0' must be at least 1"
    ]
    missing = run_cli(
        "jobping-pipeline", "setup",
        env={"JOBPING_DATABASE_URL": database_url, "JOBPING_JOBS_TABLE": "nowhere"},
    )
    assert missing.returncode == 2
    assert "JOBPING_JOBS_TABLE=public.nowhere: no such table" in missing.stderr
    assert "Traceback" not in missing.stderr


FAULTS = [
    # (error, the start of its line, exit code)
    (DatabaseUnavailable("cannot connect to JOBPING_DATABASE_URL=postgresql://u:***@db/jobs: refused"), "cannot connect", 2),
    (psycopg.OperationalError("server closed the connection unexpectedly"), "the jobs database went away", 3),
    (psycopg.errors.InsufficientPrivilege("permission denied for table jobs"), "permission denied", 4),
    (ApiUnavailable("text-embedding-3-small: the embeddings API failed 7 attempts; last: HTTP 503"), "the embeddings API is unavailable", 3),
    (ApiRequestRefused("HTTP 401: Incorrect API key", 401), "the embeddings API refused the credentials", 2),
    (InfrastructureFault("the model failed for a reason no text is to blame for: CUDA out of memory"), "the model failed", 3),
]


@pytest.mark.parametrize(("error", "start", "code"), FAULTS, ids=[type(f[0]).__name__ for f in FAULTS])
def test_every_known_fault_is_one_line_with_what_to_do(error, start, code):
    message, exit_code = describe_fault(error)
    assert message.startswith(start) and "\n" not in message and "; " in message
    assert exit_code == code


def test_an_unknown_error_keeps_its_traceback():
    assert describe_fault(KeyError("a bug")) is None


@pytest.mark.slow
def test_the_dg_cli_lists_checks_and_launches_a_partition(database_url, data_dir, dagster_home):
    """Dagster's `dg` on this project ([tool.dg] in pyproject.toml), run from the project folder
    as a user would, beside `dagster asset materialize`."""
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10", "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    listed = run_cli("dg", "list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    keys = {section: {entry.get("key") or entry.get("name") or entry.get("asset_key") for entry in entries} for section, entries in defs.items()}
    assert "job_embeddings" in keys["assets"] and {"new_and_changed_jobs"} <= keys["sensors"], defs
    assert {"embedding_checks_schedule", "embedding_deep_checks_schedule"} <= keys["schedules"]
    assert {"job_embeddings:coverage", "job_embeddings:vector_audit"} <= keys["asset_checks"], keys["asset_checks"]
    checked = run_cli("dg", "check", "defs", env=env)
    assert checked.returncode == 0 and "All definitions loaded successfully" in checked.stdout + checked.stderr

    load_demo(make_settings(database_url), 15)
    assert run_cli("jobping-pipeline", "register", env=env).returncode == 0
    launched = run_cli("dg", "launch", "--assets", "job_embeddings", "--partition", "000002", env=env)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "RUN_SUCCESS" in launched.stdout + launched.stderr
    chunks = {key: (jobs, to_do) for key, jobs, to_do, _ in JobStore(make_settings(database_url, JOBPING_CHUNK_SIZE="10")).chunk_progress(MODEL_ID)}
    assert chunks == {"000001": (10, 10), "000002": (5, 0)}


def test_backends_prints_the_measured_table_and_says_when_a_setting_overrides_it(encoder):
    from jobping_pipeline.models import ModelSpec, measured_choice

    choice = measured_choice(ModelSpec())  # measured at the session's first model load, cached
    result = run_cli("jobping-pipeline", "backends")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "fp32 FMA peak" in lines[0]
    assert [line.split()[:2] for line in lines if line.endswith("<- chosen")] == [choice.chosen.split()]
    assert "docs/performance.md#backends" in result.stdout
    overridden = run_cli("jobping-pipeline", "backends", env={"JOBPING_BACKEND": "onnx"})
    assert overridden.returncode == 0, overridden.stderr[-2000:]
    assert "JOBPING_BACKEND=onnx is set: the runs use it, whatever was measured" in overridden.stdout
    quantized = run_cli("jobping-pipeline", "backends", env={"JOBPING_QUANTIZATION": "int8"})
    assert quantized.returncode == 0, quantized.stderr[-2000:]
    assert "the runs use onnx int8 (sentence-transformers/all-MiniLM-L6-v2+int8-onnx2)" in quantized.stdout
