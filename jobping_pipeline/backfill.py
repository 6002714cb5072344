"""A full backfill from the command line, through Dagster.

Registers a chunk for every job not yet in one, tells the Dagster instance about the new
partition keys, then materializes the chunks with pending work in runs of ``embed_job_chunks``
of up to 10 chunks each, as a UI backfill does (visible in the UI afterwards). All runs happen
in this process, so the model loads once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance

from jobping_pipeline.store import Coverage, JobStore
from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.embedding import ChunkReport
from jobping_pipeline.encoding_ahead import EncodingAhead, encoding_ahead_for_runs, start_encoding_ahead
from jobping_pipeline.liveness import INSTALLATION_TAG
from jobping_pipeline.partitions import JOB_CHUNKS, in_runs, run_partitions
from jobping_pipeline.progress import bar, listening_to_chunks
from jobping_pipeline.resources import resolved
from jobping_pipeline.settings import Settings

# The command prints one line per chunk with its outcome; Dagster's own console log (stack
# traces included) stays in the run's event log, visible in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class BackfillInterrupted(Exception):
    """SIGINT or SIGTERM stopped the backfill at a batch boundary; what was written is kept."""

    def __init__(self, result: "BackfillResult") -> None:
        super().__init__("interrupted")
        self.result = result


@dataclass
class BackfillResult:
    chunks_run: int = 0
    jobs_embedded: int = 0
    failed_chunks: dict[str, str] = field(default_factory=dict)
    coverage: Coverage | None = None
    run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed_chunks and self.coverage is not None and self.coverage.complete


def sync_partitions(instance: DagsterInstance, chunk_keys: list[str]) -> list[str]:
    """Add to the instance every chunk key it does not know yet; returns those added."""
    known = set(instance.get_dynamic_partitions(JOB_CHUNKS))
    missing = [key for key in chunk_keys if key not in known]
    if missing:
        instance.add_dynamic_partitions(JOB_CHUNKS, missing)
    return missing


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _interrupted(run) -> bool:
    return any(
        event.event_type == DagsterEventType.STEP_FAILURE
        and event.step_failure_data.error is not None
        and event.step_failure_data.error.cls_name == "DagsterExecutionInterruptedError"
        for event in run.all_events
    )


def _run_failure_message(result) -> str:
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            # Dagster wraps the asset's exception ("Error occurred while executing op ..."):
            # report the exception the asset raised.
            while error is not None and error.cause is not None and "while executing" in error.message:
                error = error.cause
            return error.message.strip() if error else "step failed"
    return "run failed"


def register(store: JobStore, instance: DagsterInstance, encoder) -> tuple[list[str], list[str]]:
    """Setup (idempotent), lost vectors queued again, chunks for every job not yet in one, and
    their partition keys in Dagster. Returns setup's changes and the new chunk keys."""
    changes, new_keys = store.prepare_chunks(encoder.dimensions)
    sync_partitions(instance, store.chunk_keys())
    return changes, new_keys


# Measured here (benchmarks/throughput.py --index-rows): an HNSW index on the column cuts the
# write rate from ~18,000 to ~1,300 rows/s at a few thousand rows, falling further as it grows.
# Below this many pending jobs the index costs little; above it, building it once afterwards wins.
DEFER_INDEX_ADVICE_THRESHOLD = 10_000


def run_backfill(
    settings: Settings,
    instance: DagsterInstance,
    say: Callable[[str], None] = print,
    *,
    defer_vector_indexes: bool = False,
    timings: dict[str, float] | None = None,
    ahead: EncodingAhead | None = None,
    started: float | None = None,
) -> BackfillResult:
    """Embed every job that needs it; returns what happened, coverage included.

    With ``defer_vector_indexes``, HNSW/IVFFlat indexes on the embedding column are dropped for
    the backfill and rebuilt at its end (their definitions are kept in the state schema, so an
    interrupted backfill's indexes are rebuilt by the next setup). ``timings``: seconds already
    spent (the CLI's imports and instance), reported with the backfill's own phases. ``ahead``:
    the thread that loads the model, plans and encodes ahead of the runs, if already started
    (:func:`start_encoding_ahead`); started here otherwise. ``started``: the ``time.perf_counter()``
    the timings count from (the process's start, for the CLI; this call's, by default)."""
    started = time.perf_counter() if started is None else started
    ahead = ahead or start_encoding_ahead(settings)
    interrupted = False
    try:
        return _run_planned_backfill(settings, instance, say, ahead, defer_vector_indexes, dict(timings or {}), started)
    except (BackfillInterrupted, KeyboardInterrupt):
        interrupted = True
        raise
    finally:
        # After a signal, leave now: the model call under way ends with the process.
        ahead.stop(wait=not interrupted)


def _run_planned_backfill(
    settings, instance, say, ahead: EncodingAhead, defer_vector_indexes: bool, timings, started: float
) -> BackfillResult:
    clock = time.perf_counter()
    definitions = build_definitions(settings)
    store = resolved(definitions.resources["jobs_database"]).store()
    timings["definitions"], clock = time.perf_counter() - clock, time.perf_counter()
    encoder, plan = ahead.prepared()
    timings["waiting for the model and chunks"], clock = time.perf_counter() - clock, time.perf_counter()
    if encoder is not resolved(definitions.resources["embedding_model"]).encoder():
        raise AssertionError("the backfill's runs and its encoding ahead must share one encoder")
    sync_partitions(instance, plan.chunk_keys)
    for change in plan.changes:
        say(f"setup: {change}")
    pending = plan.pending
    total_jobs = sum(count for _, count in pending)
    say(
        f"{len(plan.chunk_keys)} chunks ({len(plan.new_keys)} new), {len(pending)} with pending work, "
        f"{total_jobs} jobs to embed with {encoder.model_id} on {encoder.device}"
    )
    indexes = store.vector_indexes()
    timings["partitions and indexes"], clock = time.perf_counter() - clock, time.perf_counter()
    if indexes and defer_vector_indexes and total_jobs:
        dropped = store.defer_vector_indexes()
        say(f"vector indexes dropped for the backfill, rebuilt at its end: {', '.join(dropped)}")
    elif indexes and total_jobs >= DEFER_INDEX_ADVICE_THRESHOLD:
        say(
            f"note: {', '.join(name for name, _, _ in indexes)} indexes the embedding column; every "
            f"write also updates it ({total_jobs} jobs pending). Pass --defer-vector-indexes to drop "
            "it now and build it once at the end (search has no index meanwhile)."
        )
    runs_from = time.perf_counter() - started
    try:
        with encoding_ahead_for_runs(ahead):
            tags = {INSTALLATION_TAG: store.meta().get("installation", "")}
            result = _materialize_pending(definitions, instance, pending, total_jobs, say, tags)
    finally:
        for name in store.restore_vector_indexes():
            say(f"vector index {name} rebuilt")
    # From the state: setup queued every job the triggers never saw, and the runs recorded
    # every write, so the state knows; the join with the whole table would cost seconds at 1M.
    timings["runs"], clock = time.perf_counter() - clock, time.perf_counter()
    result.coverage = store.state_coverage(encoder.model_id)
    timings["coverage"] = time.perf_counter() - clock
    result.timings = timings
    if ahead.first_encode_at is not None:
        say(
            f"encoding thread: model loaded in {ahead.seconds['model']:.1f} s, setup and chunks "
            f"{ahead.seconds['setup and chunks']:.1f} s, model at work from {ahead.first_encode_at - started:.1f} s "
            + (f"to {ahead.last_encode_end - started:.1f} s " if ahead.last_encode_end is not None else "")
            + f"(the first run from {runs_from:.1f} s); {ahead.texts_encoded} texts encoded there"
        )
    say("timings: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items()))
    say(describe_coverage(result.coverage) + f" ({result.jobs_embedded} embedded in {format_duration(result.seconds)})")
    return result


def describe_coverage(coverage: Coverage) -> str:
    """One line: the percentage, then the counts that decide it."""
    return (
        f"coverage {coverage.percent:.2f}%: {coverage.fresh} of {coverage.eligible} jobs embedded and fresh"
        + (f", {coverage.pending} pending" if coverage.pending else "")
        + (f", {coverage.stale} stale" if coverage.stale else "")
        + (f", {coverage.missing} missing" if coverage.missing else "")
        + (f", {coverage.failed} with errors" if coverage.failed else "")
        + (f", {coverage.hidden} hidden from this role by row-level security" if coverage.hidden else "")
    )


def _materialize_pending(definitions, instance, pending, total_jobs, say, tags: dict[str, str]) -> BackfillResult:
    """The chunks with pending work in runs of up to 10 (a partition range each, as a UI backfill
    makes them), executed in this process one after the other, with a progress line per chunk as
    it finishes (and a progress bar on a terminal)."""
    job = definitions.resolve_job_def(EMBED_JOB)
    result = BackfillResult()
    started = time.perf_counter()
    counts = dict(pending)
    positions = {key: index for index, (key, _) in enumerate(pending, start=1)}
    reported: set[str] = set()
    done_jobs = 0

    with bar(total_jobs, "backfill") as progress:

        def report(chunk_key: str, status: str) -> None:
            nonlocal done_jobs
            reported.add(chunk_key)
            result.chunks_run += 1
            done_jobs += counts[chunk_key]
            progress.update(counts[chunk_key])
            elapsed = time.perf_counter() - started
            rate = done_jobs / elapsed if elapsed > 0 else 0.0
            eta = (total_jobs - done_jobs) / rate if rate > 0 else 0.0
            line = (
                f"[{positions[chunk_key]}/{len(pending)}] chunk {chunk_key}: {counts[chunk_key]} pending, {status}; "
                f"{rate:.1f} jobs/s, ETA {format_duration(eta)}"
            )
            if progress.disable:
                say(line)
            else:
                progress.write(line)

        def chunk_done(chunk: ChunkReport, error: str | None) -> None:
            if chunk.chunk_key not in counts:
                return  # an up-to-date chunk inside a run's range: skipped, not counted
            result.jobs_embedded += chunk.embedded
            status = f"{chunk.embedded} embedded"
            if error:
                result.failed_chunks[chunk.chunk_key] = error
                status += f", FAILED: {error.splitlines()[0]}"
            report(chunk.chunk_key, status)

        with listening_to_chunks(chunk_done):
            for run_keys in in_runs([key for key, _ in pending]):
                try:
                    outcome = _materialize_run(job, instance, run_keys, result, reported, tags)
                except KeyboardInterrupt:  # between runs; within one, Dagster ends the run instead
                    outcome = "interrupted"
                if outcome == "interrupted":
                    result.seconds = time.perf_counter() - started
                    raise BackfillInterrupted(result)
                for chunk_key in run_keys:
                    if chunk_key in result.failed_chunks and chunk_key not in reported:
                        report(chunk_key, f"FAILED: {result.failed_chunks[chunk_key].splitlines()[0]}")
    result.seconds = time.perf_counter() - started
    return result


def _materialize_run(
    job, instance: DagsterInstance, chunk_keys: list[str], result: BackfillResult, finished: set[str], tags: dict[str, str]
) -> str:
    """One run of ``chunk_keys`` through Dagster: a partition, or the range from the first to the
    last. Chunks report themselves as they finish (``chunk_done``); a run that fails as a whole
    fails the chunks it did not finish, and a chunk check that fails with ERROR fails the run's
    chunks when no chunk said why. Returns "interrupted" or "done"."""
    partition_key, range_tags = run_partitions(chunk_keys)
    run = job.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        tags={"jobping/trigger": "cli-backfill", **tags, **range_tags},
    )
    result.run_ids.append(run.run_id)
    if _interrupted(run):
        return "interrupted"
    if not run.success:
        message = f"run {run.run_id} failed: {_run_failure_message(run)}"
        for chunk_key in chunk_keys:
            if chunk_key not in finished:
                result.failed_chunks.setdefault(chunk_key, message)
        return "done"
    failed_here = [key for key in chunk_keys if key in result.failed_chunks]
    for event in run.all_events:
        check = event.asset_check_evaluation_data if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION else None
        if check is not None and not check.passed and check.severity == AssetCheckSeverity.ERROR and not failed_here:
            for chunk_key in chunk_keys:
                result.failed_chunks[chunk_key] = f"check {check.check_name} failed: {check.description}"
    return "done"
