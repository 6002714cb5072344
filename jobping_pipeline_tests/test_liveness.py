"""Runs whose worker is gone are seen as ended (liveness.py, store/runs.py): the heartbeat, the
rule that calls a run gone, and the whole case of issue 23: a backfill killed with SIGKILL, whose
run Dagster shows as STARTED for ever, no longer blocks its chunks."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, job, op

from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.liveness import INSTALLATION_TAG, gone_runs, heartbeat
from jobping_pipeline.sensors import end_gone_runs
from jobping_pipeline.store import JobStore
from jobping_pipeline.store.runs import DEAD_AFTER_SECONDS, START_GRACE_SECONDS, RunLiveness

from .helpers import PROJECT_DIR, execute, kill_when, load_demo, make_settings, requested, run_chunks, run_cli, tick

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def test_a_run_is_gone_when_silent_or_when_it_never_beat_after_the_grace():
    beats = {
        "working": RunLiveness("working", 5.0, False),
        "killed": RunLiveness("killed", DEAD_AFTER_SECONDS + 1, False),
        "killed after its work": RunLiveness("killed after its work", DEAD_AFTER_SECONDS + 1, True),
    }
    started = {
        "working": 600.0,
        "killed": 600.0,
        "killed after its work": 600.0,
        "starting": START_GRACE_SECONDS - 1,
        "never beat": START_GRACE_SECONDS + 1,
    }
    gone = {run.run_id: run.finished_its_work for run in gone_runs(started, beats)}
    assert gone == {"killed": False, "killed after its work": True, "never beat": False}


def test_the_heartbeat_beats_while_the_block_runs_and_records_its_end(settings):
    store = load_demo(settings, 3)
    store.setup(384)
    with heartbeat(store, "run-1", every=0.05):
        first = store.run_liveness(["run-1"])["run-1"]
        time.sleep(0.3)
        assert not first.ended and store.run_liveness(["run-1"])["run-1"].silent_seconds < 0.3
    assert store.run_liveness(["run-1"])["run-1"].ended
    assert store.run_liveness(["run-2"]) == {}


def test_a_killed_backfill_no_longer_blocks_its_chunks(database_url, encoder, dagster_home):
    """`jobping-pipeline backfill` killed with SIGKILL inside its run: the run stays STARTED in
    Dagster. While its heartbeat is fresh its chunks count as in flight; once it is silent (90 s,
    compressed here by ageing the heartbeat) the sensor marks the run failed, counts it against
    its chunks, requests their work again, and the runs bring `status` to exit 0."""
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE="10", JOBPING_BATCH_SIZE="2")
    load_demo(settings, 40)
    env = {"JOBPING_DATABASE_URL": database_url, "JOBPING_CHUNK_SIZE": "10", "JOBPING_BATCH_SIZE": "2"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "jobping-pipeline"), "backfill"],
        env={**os.environ, **env}, cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    store = JobStore(settings)
    kill_when(process, lambda: _fresh_jobs(database_url) > 0, "a vector written by the backfill")
    assert run_cli("jobping-pipeline", "status", env=env).returncode == 1

    with DagsterInstance.get() as instance:
        (started,) = [
            run for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            if run.run_id in store.run_liveness([run.run_id])
        ]
        assert requested(tick(settings, instance)) == [], "a run that still beats keeps its chunks"

        execute(settings, "UPDATE jobping_pipeline.run_heartbeats SET beat_at = now() - interval '91 seconds'")
        with_work = [key for key, _ in store.chunks_with_pending_work(MODEL_ID)]
        assert requested(tick(settings, instance)) == [], "the lost run counts as a failed run: one tick of backoff"
        assert instance.get_run_by_id(started.run_id).status == DagsterRunStatus.FAILURE
        assert [key for key, _, _ in store.failing_chunks()] == with_work, "counted only where it left work"
        result = tick(settings, instance)
        assert with_work and requested(result) == with_work
        run_chunks(settings, instance, result)
    assert run_cli("jobping-pipeline", "status", env=env).returncode == 0


def _fresh_jobs(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        found = connection.execute(
            "SELECT to_regclass('jobping_pipeline.job_state') IS NOT NULL"
        ).fetchone()[0]
        if not found:
            return 0
        return connection.execute(
            "SELECT count(*) FROM jobping_pipeline.job_state WHERE embedded_version = text_version"
        ).fetchone()[0]


@op
def unrelated_step():
    return 1


@job
def unrelated_partitioned_job():
    unrelated_step()


def test_only_this_installations_runs_of_job_embeddings_are_ever_ended(settings, instance):
    """A started run that never beat is ended once START_GRACE_SECONDS have passed, but only a run
    of job_embeddings tagged with this installation: another job's partitioned run, and a run of
    another installation sharing the Dagster instance (it beats in its own state), are left alone."""
    store = load_demo(settings, 3)
    store.setup(384)
    store.register_chunks(scan_table=True)
    installation = store.meta()["installation"]
    embedding_job = build_definitions(settings).resolve_job_def(EMBED_JOB)

    def started(job, **tags):
        return instance.create_run_for_job(job, tags={"dagster/partition": "000001", **tags}, status=DagsterRunStatus.STARTED)

    ours = started(embedding_job, **{INSTALLATION_TAG: installation})
    elsewhere = started(embedding_job, **{INSTALLATION_TAG: "another-installation"})
    untagged = started(embedding_job)  # no tag and no code location: whose, nobody can tell
    theirs = started(unrelated_partitioned_job)
    assert end_gone_runs(instance, store, EMBED_JOB, installation) == [], "within the grace"
    later = time.time() + START_GRACE_SECONDS + 60
    assert [run.run_id for run in end_gone_runs(instance, store, EMBED_JOB, installation, now=later)] == [ours.run_id]
    statuses = {run.run_id: instance.get_run_by_id(run.run_id).status for run in (ours, elsewhere, untagged, theirs)}
    assert statuses == {
        ours.run_id: DagsterRunStatus.FAILURE,
        elsewhere.run_id: DagsterRunStatus.STARTED,
        untagged.run_id: DagsterRunStatus.STARTED,
        theirs.run_id: DagsterRunStatus.STARTED,
    }
    assert [key for key, _, _ in store.failing_chunks()] == ["000001"]


def test_a_tick_on_state_from_before_the_heartbeats_migrates_first(settings, instance):
    """The sensor judges runs only after setup: on state schema 4 (no heartbeat table yet) a tick
    upgrades the state instead of failing on the missing table."""
    store = load_demo(settings, 12)
    store.setup(384)
    execute(
        settings,
        "DROP TABLE jobping_pipeline.run_heartbeats",
        "DELETE FROM jobping_pipeline.meta WHERE key = 'installation'",
        "UPDATE jobping_pipeline.meta SET value = '4' WHERE key = 'state_schema_version'",
    )
    result = tick(settings, instance)
    assert requested(result) == ["000001"]
    assert store.meta()["installation"] and store.run_liveness(["any"]) == {}
    assert all(request.tags[INSTALLATION_TAG] == store.meta()["installation"] for request in result.run_requests)
