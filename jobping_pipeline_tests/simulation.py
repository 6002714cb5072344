"""A compressed year of a job board, driven through the sensor's own logic against a real
database (used by test_simulated_year.py and benchmarks/simulated_year.py).

Each tick: Poisson arrivals (a daily cycle between about 1 and 50 jobs a tick), now and then a
burst of text edits or of deletes, all through the application's path (plain INSERT, UPDATE and
DELETE, so the triggers see them); then ``plan_tick``, exactly as the sensor calls it; then the
runs it requested, counted as done: their dirty jobs get a vector and their state records the
version it was computed from, in one transaction, as an embedding run commits. The model is not
under test here (test_embedding.py and the benchmarks run the real one): a run's cost is the
model's, which this replaces with a fixed unit vector.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from jobping_pipeline.models import ModelSpec
from jobping_pipeline.liveness import gone_runs
from jobping_pipeline.sensors import TickPlan, plan_tick
from jobping_pipeline.store import JobStore
from jobping_pipeline.store.runs import RunLiveness

MODEL_ID = ModelSpec().model_id
TICKS_PER_DAY = 96
VACUUM_EVERY = 500
UNIT_VECTOR = "[" + ",".join(["1"] + ["0"] * 383) + "]"

INSERT_JOBS = (
    "INSERT INTO jobs (title, company, location, description) "
    "SELECT 'Job ' || g, 'Company ' || (g %% 997), 'City ' || (g %% 101), 'Tick ' || %(tick)s || ' posting ' || g "
    "FROM generate_series(1, %(count)s) g"
)
EDIT_JOBS = "UPDATE jobs SET description = description || ' (edited at tick ' || %(tick)s || ')' WHERE id = ANY(%(ids)s)"
DELETE_JOBS = "DELETE FROM jobs WHERE id = ANY(%(ids)s)"
# One run counted as done: what embed_chunk commits for each job it embeds, in one statement.
COMPLETE_RUN = sql.SQL(
    "WITH done AS ("
    " UPDATE {job_state} s SET embedded_version = s.text_version, model_id = %(model_id)s, text_hash = '\\x00',"
    "  embedded_at = now(), attempts = 0, last_error = NULL"
    " FROM {chunks} c WHERE c.chunk_no = s.chunk_no AND c.chunk_key = ANY(%(chunk_keys)s) AND s.dirty"
    " RETURNING s.job_id) "
    "UPDATE jobs SET embedding = %(vector)s::vector FROM done WHERE jobs.id = done.job_id"
)


@dataclass
class YearFigures:
    """What the year did and what the sensor asked for (test_simulated_year.py asserts on it)."""

    chunk_size: int
    ticks: int = 0
    jobs_inserted: int = 0
    jobs_edited: int = 0
    jobs_deleted: int = 0
    ticks_with_work: int = 0
    runs: int = 0
    partitions: int = 0
    # Over all ticks, the largest excess over each bound (0 or less: the bound always held).
    most_partitions_over_bound: int = -(10**9)
    most_runs_over_bound: int = -(10**9)
    most_runs_in_a_tick: int = 0
    most_dirty_chunks_in_a_tick: int = 0
    # Runs beyond the first in ticks where more than 10 chunks were dirty (a burst of edits).
    burst_runs: int = 0
    tick_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def tick_ms(self, first: bool, ticks: int = 1000) -> float:
        """Median time of plan_tick over the first (or last) ``ticks`` ticks, in ms."""
        window = self.tick_seconds[:ticks] if first else self.tick_seconds[-ticks:]
        return 1000 * statistics.median(window)

    def summary(self) -> str:
        return (
            f"{self.ticks} ticks, {self.jobs_inserted} jobs inserted, {self.jobs_edited} edited, "
            f"{self.jobs_deleted} deleted; chunks of {self.chunk_size}: {self.partitions} partitions "
            f"(bound jobs / chunk size + 2 = {math.ceil(self.jobs_inserted / self.chunk_size) + 2}); "
            f"{self.runs} runs requested over {self.ticks_with_work} ticks with work, at most "
            f"{self.most_runs_in_a_tick} in a tick (most dirty chunks in a tick: {self.most_dirty_chunks_in_a_tick}); "
            f"tick median {self.tick_ms(True):.1f} ms over the first 1,000 ticks, {self.tick_ms(False):.1f} ms "
            f"over the last 1,000; {self.seconds:.0f} s in all"
        )


def arrivals_rate(tick: int) -> float:
    """Jobs expected at ``tick``: about 1 at night, 50 at the daily peak (mean about 16)."""
    day = (1 + math.sin(2 * math.pi * tick / TICKS_PER_DAY)) / 2
    return 1 + 49 * day**3


def poisson(rng: random.Random, rate: float) -> int:
    """Knuth's method (rates here stay below 60)."""
    threshold, count, product = math.exp(-rate), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


FAULTS = ("run fails", "terminated from the UI", "canceled while queued", "worker killed", "API outage")
SECONDS_PER_TICK = 30  # the sensor's default interval


@dataclass
class Chaos:
    """Faults at random ticks, played against the sensor's own logic (``plan_tick``, the
    backoff, the run keys and ``gone_runs``) in place of Dagster and a model: what each one leaves
    behind is what the real fault leaves in the state and in Dagster's view of the runs."""

    rate: float = 0.02  # chance of a fault a tick, until ``quiet_after``
    quiet_after: int = 0  # the tick after which no fault is injected
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    api_down_until: int = -1
    lost_runs: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # run -> its chunks, tick killed
    run_keys: set[str] = field(default_factory=set)
    repeated_run_keys: int = 0
    # Per chunk with due work, ticks since it was last requested (or since it became due).
    waiting: dict[str, int] = field(default_factory=dict)
    longest_wait: int = 0
    longest_wait_after_quiet: int = 0
    runs_failed: int = 0

    def new_run_key(self, run_key: str) -> bool:
        """Dagster's run-key deduplication: a request whose key already has a run is skipped."""
        if run_key in self.run_keys:
            self.repeated_run_keys += 1
            return False
        self.run_keys.add(run_key)
        return True

    def in_flight(self, chunk_keys: list[str]) -> set[str]:
        return {key for keys, _ in self.lost_runs.values() for key in keys}


def _end_lost_runs(store: JobStore, chaos: Chaos, tick: int) -> None:
    """What the sensor's ``end_gone_runs`` does once a killed run has been silent long enough."""
    beats = {
        run_id: RunLiveness(run_id, (tick - killed_at) * SECONDS_PER_TICK, False)
        for run_id, (_, killed_at) in chaos.lost_runs.items()
    }
    for gone in gone_runs({run_id: 600.0 for run_id in chaos.lost_runs}, beats):
        keys, _ = chaos.lost_runs.pop(gone.run_id)
        store.record_run_outcome(keys, f"run {gone.run_id} lost: {gone.reason}")


def _play_run(store, chaos: Chaos, tick: int, rng: random.Random, keys: list[str], complete) -> None:
    """One requested run, under whatever fault this tick brings."""
    fault = None
    if tick < chaos.quiet_after and rng.random() < chaos.rate:
        fault = rng.choice(FAULTS)
        chaos.faults[fault] += 1
        if fault == "API outage":
            chaos.api_down_until = tick + rng.randint(1, 10)
    if tick <= chaos.api_down_until or fault == "run fails":
        store.record_run_outcome(keys, "InfrastructureFault: injected")  # fails as a whole, charges no job
        chaos.runs_failed += 1
    elif fault in ("terminated from the UI", "canceled while queued"):
        pass  # ends without doing the work and without recording anything
    elif fault == "worker killed":
        chaos.lost_runs[f"run-{tick}-{keys[0]}"] = (keys, tick)  # Dagster shows it STARTED for ever
    else:
        complete(keys)
        store.record_run_outcome(keys, None)


def _watch_waits(plan: TickPlan, chaos: Chaos, tick: int) -> None:
    requested = {chunk.chunk_key for run in plan.runs for chunk in run}
    due = requested | set(plan.chunks_backing_off) | set(plan.chunks_in_flight)
    chaos.waiting = {key: 0 if key in requested else chaos.waiting.get(key, 0) + 1 for key in due}
    longest = max(chaos.waiting.values(), default=0)
    chaos.longest_wait = max(chaos.longest_wait, longest)
    if tick >= chaos.quiet_after:
        chaos.longest_wait_after_quiet = max(chaos.longest_wait_after_quiet, longest)


def simulate_year(
    store: JobStore, ticks: int, *, seed: int = 7, edit_every: int = 200, delete_every: int = 400, chaos: Chaos | None = None
) -> YearFigures:
    """Run ``ticks`` ticks against ``store``'s table (set up and empty); returns the figures.
    With ``chaos``, faults strike the runs at random ticks (see :class:`Chaos`)."""
    rng = random.Random(seed)
    figures = YearFigures(chunk_size=store.settings.chunk_size)
    known: list[str] = []
    started = time.perf_counter()
    names = store.names()
    complete_run = COMPLETE_RUN.format(job_state=names.state("job_state"), chunks=names.state("chunks"))
    # One connection for the sensor's store throughout (a real tick opens its own: a constant
    # cost, paid here once so that what is measured is what could grow).
    with psycopg.connect(store.url, autocommit=True) as app, psycopg.connect(store.url, autocommit=True) as runs, store.session():
        runs.execute("SET session_replication_role = replica")  # a run's writes fire no trigger of the app's
        runs.execute("SET jobping.vector_write = 'on'")  # and are the pipeline's own (writes.py)
        for tick in range(ticks):
            if tick % VACUUM_EVERY == 0:
                _vacuum(app, names)
            _application_tick(app, rng, tick, figures, edit_every, delete_every)
            tick_started = time.perf_counter()
            if chaos is not None:
                _end_lost_runs(store, chaos, tick)
            plan = plan_tick(store, known, chaos.in_flight if chaos is not None else None)
            figures.tick_seconds.append(time.perf_counter() - tick_started)
            known.extend(plan.partitions_to_add)
            _count(plan, figures, len(known))

            def complete(chunk_keys: list[str]) -> None:
                runs.execute(complete_run, {"model_id": MODEL_ID, "chunk_keys": chunk_keys, "vector": UNIT_VECTOR})

            for run in plan.runs:
                keys = [chunk.chunk_key for chunk in run]
                if chaos is None:
                    complete(keys)
                elif chaos.new_run_key("|".join(chunk.run_key(plan.request_numbers[chunk.chunk_key]) for chunk in run)):
                    _play_run(store, chaos, tick, rng, keys, complete)
            if chaos is not None:
                _watch_waits(plan, chaos, tick)
            figures.ticks += 1
    figures.seconds = time.perf_counter() - started
    return figures


def _vacuum(app, names) -> None:
    """What autovacuum does in a real year: a compressed one outruns it (its naptime is a
    minute), leaving the partial indexes full of dead entries and the planner without statistics."""
    for table in (names.state("job_state"), names.state("chunks"), sql.Identifier("jobs")):
        app.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


def _application_tick(app, rng: random.Random, tick: int, figures: YearFigures, edit_every: int, delete_every: int) -> None:
    count = poisson(rng, arrivals_rate(tick))
    if count:
        app.execute(INSERT_JOBS, {"tick": tick, "count": count})
        figures.jobs_inserted += count
    if figures.jobs_inserted and rng.randrange(edit_every) == 0:
        ids = [rng.randint(1, figures.jobs_inserted) for _ in range(rng.randint(1, 300))]
        figures.jobs_edited += app.execute(EDIT_JOBS, {"tick": tick, "ids": ids}).rowcount
    if figures.jobs_inserted and rng.randrange(delete_every) == 0:
        ids = [rng.randint(1, figures.jobs_inserted) for _ in range(rng.randint(1, 100))]
        figures.jobs_deleted += app.execute(DELETE_JOBS, {"ids": ids}).rowcount


def _count(plan: TickPlan, figures: YearFigures, partitions: int) -> None:
    dirty = len(plan.chunks_to_run)
    figures.partitions = partitions
    figures.most_partitions_over_bound = max(
        figures.most_partitions_over_bound, partitions - (math.ceil(figures.jobs_inserted / figures.chunk_size) + 2)
    )
    figures.most_runs_over_bound = max(figures.most_runs_over_bound, len(plan.runs) - math.ceil(dirty / 10))
    figures.most_runs_in_a_tick = max(figures.most_runs_in_a_tick, len(plan.runs))
    figures.most_dirty_chunks_in_a_tick = max(figures.most_dirty_chunks_in_a_tick, dirty)
    figures.runs += len(plan.runs)
    figures.burst_runs += max(len(plan.runs) - 1, 0)
    figures.ticks_with_work += bool(dirty)
