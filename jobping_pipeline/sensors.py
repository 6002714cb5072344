"""The sensor that keeps ``job_embeddings`` complete without anyone running anything.

Each tick: make sure setup matches the configuration (every setting setup records: text
columns, embedding column, eligible column, id type, state schema version) and that the
change-capture triggers are in place and enabled ALWAYS, put queued new jobs into the newest chunk
(a new one only when it is full), make sure Dagster knows every chunk's partition key (restoring
them on a fresh instance), and request runs for the chunks with new or edited jobs: up to 10 such
chunks a run, as one partition range however far apart they are (the run skips the up-to-date
chunks in between), skipping chunks a queued or running run already covers and backing off on
chunks whose runs keep failing. Runs whose worker is gone (no heartbeat: killed, out of memory,
machine lost) are marked failed first, so their chunks are not in flight for ever. Each request's
run key carries its number for the chunk: a run that ended without doing the work (failed,
terminated, canceled, lost) never makes Dagster skip the next request. The model
is never loaded by a tick, and every query is served by an index on the pipeline's own tables:
no scan of the jobs table.

A change of model is not acted on by the sensor: re-embedding a whole table is a deliberate,
hours-long operation, so the coverage check reports those jobs as stale and the operator runs a
backfill of all partitions (UI) or ``jobping-pipeline backfill``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from jobping_pipeline.assets import SENSOR_CHUNKS_TAG, job_embeddings
from jobping_pipeline.liveness import INSTALLATION_TAG, GoneRun, gone_runs
from jobping_pipeline.store import JobStore
from jobping_pipeline.store.chunks import DirtyChunk
from jobping_pipeline.partitions import JOB_CHUNKS, RANGE_END_TAG, RANGE_START_TAG, in_runs, run_partitions
from jobping_pipeline.resources import EmbeddingModel, JobsDatabase

SENSOR_NAME = "new_and_changed_jobs"
IN_PROGRESS = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
PARTITION_TAG = "dagster/partition"
RECENT_BACKFILLS = 100
BACKOFF_CAP_TICKS = 64
# However much is dirty (the first tick after setup on a million rows), a tick queues at most
# this many runs; the rest stays dirty and is requested by the next ticks.
MAX_RUNS_PER_TICK = 20


@dataclass
class TickPlan:
    """What one tick decided, in plain data (tested without a daemon)."""

    setup_changes: list[str] = field(default_factory=list)
    new_chunks: list[str] = field(default_factory=list)
    partitions_to_add: list[str] = field(default_factory=list)
    chunks_to_run: list[DirtyChunk] = field(default_factory=list)
    runs: list[list[DirtyChunk]] = field(default_factory=list)
    chunks_left_for_later: int = 0
    chunks_in_flight: list[str] = field(default_factory=list)
    chunks_backing_off: list[str] = field(default_factory=list)
    request_numbers: dict[str, int] = field(default_factory=dict)
    gone_runs: list[GoneRun] = field(default_factory=list)
    installation: str = ""
    tick: int = 0


def chunks_in_requested_backfills(instance: DagsterInstance) -> set[str]:
    """Chunks that a requested asset backfill (from the UI, say) has yet to materialize: their
    runs may not exist yet, but the backfill daemon will launch them."""
    busy: set[str] = set()
    # Dagster has no public API for the partitions a backfill has yet to launch: this reads the
    # newest backfills (newest first) and their asset_backfill_data, filtering by status name
    # because the status enum is not public either. An older backfill still running is missed;
    # its chunks would then also get a sensor run, which the chunk lock makes a no-op.
    for backfill in instance.get_backfills(limit=RECENT_BACKFILLS):
        if backfill.status.value != "REQUESTED":
            continue
        data = backfill.asset_backfill_data
        if data is None:
            continue
        for entry in data.get_targeted_partitions_without_materialization_status().iterate_asset_partitions():
            if entry.asset_key == job_embeddings.key and entry.partition_key is not None:
                busy.add(entry.partition_key)
    return busy


def run_chunk_keys(tags, chunk_keys: list[str]) -> list[str]:
    """The chunk keys a run covers, from its partition tags (``chunk_keys``: every known key)."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        start, end = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        return [key for key in chunk_keys if start <= key <= end]
    return []


def chunks_in_flight(instance: DagsterInstance, chunk_keys: list[str]) -> set[str]:
    """Chunk keys that a queued or running run (of any job, UI backfills included) or a
    requested backfill covers."""
    busy = chunks_in_requested_backfills(instance)
    for run in instance.get_runs(RunsFilter(statuses=IN_PROGRESS)):
        busy.update(run_chunk_keys(run.tags, chunk_keys))
    return busy


def is_embedding_run(run, job_name: str) -> bool:
    """A run of ``job_embeddings``: the sensor's job, or a materialization of the asset (UI)."""
    return run.job_name == job_name or bool(run.asset_selection and job_embeddings.key in run.asset_selection)


def judged_without_heartbeat(run, installation: str, location_name: str | None) -> bool:
    """Whether a started run with no heartbeat row here is this installation's to judge: tagged
    with it (sensor and CLI runs), or untagged from this code location (a UI materialization).
    A run of another installation (another jobs database or state schema sharing the Dagster
    instance) beats in its own state, never here, and is left alone."""
    tag = run.tags.get(INSTALLATION_TAG)
    if tag is not None:
        return tag == installation
    origin = run.remote_job_origin
    return origin is not None and location_name is not None and origin.location_name == location_name


def end_gone_runs(
    instance: DagsterInstance,
    store: JobStore,
    job_name: str,
    installation: str,
    location_name: str | None = None,
    now: float | None = None,
) -> list[GoneRun]:
    """Runs of ``job_embeddings`` that Dagster shows as started but whose worker is gone (no
    heartbeat, :mod:`jobping_pipeline.liveness`): each is marked failed in Dagster (which also
    frees its place in the embedding pool) and counted as a failed run of the chunks it left work
    in. Their chunks are then no longer in flight, and the tick requests their work again."""
    store.forget_old_heartbeats()
    records = {
        record.dagster_run.run_id: record
        for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
        if is_embedding_run(record.dagster_run, job_name)
    }
    if not records:
        return []
    beats = store.run_liveness(list(records))
    now = time.time() if now is None else now
    started = {
        run_id: now - (record.start_time if record.start_time is not None else record.create_timestamp.timestamp())
        for run_id, record in records.items()
        if run_id in beats or judged_without_heartbeat(record.dagster_run, installation, location_name)
    }
    gone = gone_runs(started, beats)
    all_keys = store.chunk_keys() if gone else []
    with_work = {chunk.chunk_key for chunk in store.dirty_chunks()} if gone else set()
    for run in gone:
        dagster_run = records[run.run_id].dagster_run
        instance.report_run_failed(dagster_run, message=f"jobping-pipeline: {run.reason}; its chunks are requested again")
        requested = dagster_run.tags.get(SENSOR_CHUNKS_TAG)
        covered = requested.split(",") if requested else run_chunk_keys(dagster_run.tags, all_keys)
        unfinished = [key for key in covered if key in with_work]
        if not run.finished_its_work and unfinished:
            # Only the chunks it left work in: one it finished must not show as failing for ever.
            store.record_run_outcome(unfinished, f"run {run.run_id} lost: {run.reason}")
    return gone


def plan_tick(
    store: JobStore,
    known_partitions: Iterable[str],
    in_flight: Callable[[list[str]], set[str]] | None = None,
    model: EmbeddingModel | None = None,
    end_gone: Callable[[str], list[GoneRun]] | None = None,
) -> TickPlan:
    """Decide a tick. ``in_flight`` maps the registry's chunk keys to those already being worked
    on; ``end_gone`` ends the runs whose worker is gone (given this installation's id), after
    setup and before ``in_flight`` is asked; ``model`` is loaded only when setup has never run
    (to size the column)."""
    with store.session():
        return _plan_tick(store, known_partitions, in_flight, model, end_gone)


def _plan_tick(store, known_partitions, in_flight, model, end_gone) -> TickPlan:
    plan = TickPlan()
    meta = store.meta()
    if meta.get("embedding_dimensions"):
        dimensions = int(meta["embedding_dimensions"])
    elif model is not None:
        dimensions = model.encoder().dimensions
    else:
        raise RuntimeError("the pipeline is not set up: run `jobping-pipeline setup`")
    if store.setup_outdated(dimensions):
        plan.setup_changes = store.setup(dimensions)  # also queues jobs that have no state yet
        meta = store.meta()
    plan.installation = meta.get("installation", "")
    if end_gone is not None:
        plan.gone_runs = end_gone(plan.installation)
    plan.tick = store.advance_tick()
    plan.new_chunks = store.register_chunks(scan_table=False)
    all_keys = store.chunk_keys()
    known = set(known_partitions)
    plan.partitions_to_add = [key for key in all_keys if key not in known]
    busy = in_flight(all_keys) if in_flight else set()
    for chunk in store.dirty_chunks():
        if chunk.chunk_key in busy:
            plan.chunks_in_flight.append(chunk.chunk_key)
        elif chunk.failed_runs and plan.tick < _retry_tick(store, chunk, plan.tick):
            plan.chunks_backing_off.append(chunk.chunk_key)
        else:
            plan.chunks_to_run.append(chunk)
    runs = in_runs(plan.chunks_to_run)  # the model loads once per run
    plan.runs = runs[:MAX_RUNS_PER_TICK]
    plan.chunks_left_for_later = sum(len(run) for run in runs[MAX_RUNS_PER_TICK:])
    plan.request_numbers = store.number_requests([chunk.chunk_key for run in plan.runs for chunk in run])
    return plan


def run_request(run: list[DirtyChunk], request_numbers: dict[str, int], installation: str) -> RunRequest:
    """One run for these chunks: a partition, or a partition range from the first to the last.
    Its run key names the state of each chunk's work and the number of this request for the
    chunk: a chunk is never requested while a run covers it, and whenever a run ended without
    doing the work (failed, terminated, canceled while queued, its worker killed) the next
    request is new to Dagster's run-key deduplication, so the work is requested again."""
    tags = {
        "jobping/trigger": "sensor",
        INSTALLATION_TAG: installation,
        SENSOR_CHUNKS_TAG: ",".join(chunk.chunk_key for chunk in run),
        "jobping/pending_jobs": str(sum(chunk.jobs for chunk in run)),
    }
    partition_key, range_tags = run_partitions([chunk.chunk_key for chunk in run])
    return RunRequest(
        run_key="|".join(chunk.run_key(request_numbers[chunk.chunk_key]) for chunk in run),
        partition_key=partition_key,
        tags={**tags, **range_tags},
    )


def _retry_tick(store: JobStore, chunk: DirtyChunk, tick: int) -> int:
    """A chunk whose runs keep failing as a whole is tried again after 1, 2, 4 ... ticks (at most
    BACKOFF_CAP_TICKS), counted from the tick that first sees the failure."""
    if chunk.retry_at_tick is not None:
        return chunk.retry_at_tick
    retry_at = tick + min(2 ** (chunk.failed_runs - 1), BACKOFF_CAP_TICKS)
    store.schedule_retry(chunk.chunk_key, retry_at)
    return retry_at


def build_sensor(job, interval_seconds: int) -> SensorDefinition:
    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
    )
    def new_and_changed_jobs(
        context: SensorEvaluationContext, jobs_database: JobsDatabase, embedding_model: EmbeddingModel
    ) -> SensorResult:
        """Catches new and edited jobs: registers new chunks as partitions of job_embeddings and
        requests a run for every chunk with pending work, never while a run covering it is
        queued or running. Runs whose worker is gone (no heartbeat for 90 s) are marked failed
        and their work requested again. A chunk whose runs fail as a whole is tried again after
        1, 2, 4 ... 64 ticks. Restores partition keys from the database registry on a fresh
        instance."""
        store = jobs_database.store()
        instance = context.instance
        location = context.code_location_origin.location_name if context.code_location_origin else None
        known = instance.get_dynamic_partitions(JOB_CHUNKS)
        plan = plan_tick(
            store,
            known,
            lambda chunk_keys: chunks_in_flight(instance, chunk_keys),
            embedding_model,
            lambda installation: end_gone_runs(instance, store, job.name, installation, location),
        )
        for change in plan.setup_changes:
            context.log.info(f"setup: {change}")
        for gone in plan.gone_runs:
            context.log.warning(f"run {gone.run_id} marked failed: {gone.reason}; its chunks are requested again")
        context.log.info(
            f"tick {plan.tick}: {len(plan.new_chunks)} new chunks, {len(plan.partitions_to_add)} partitions added, "
            f"{len(plan.runs)} runs requested for {len(plan.chunks_to_run) - plan.chunks_left_for_later} chunks "
            f"({plan.chunks_left_for_later} left for the next ticks), {len(plan.chunks_in_flight)} chunks already "
            f"in flight, {len(plan.chunks_backing_off)} failing chunks backing off"
        )
        return SensorResult(
            run_requests=[run_request(run, plan.request_numbers, plan.installation) for run in plan.runs],
            dynamic_partitions_requests=(
                [AddDynamicPartitionsRequest(JOB_CHUNKS, plan.partitions_to_add)]
                if plan.partitions_to_add
                else []
            ),
        )

    return new_and_changed_jobs
