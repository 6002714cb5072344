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

from jobping_pipeline.encoder import ModelSpec
from jobping_pipeline.sensors import TickPlan, plan_tick
from jobping_pipeline.store import JobStore

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


def simulate_year(store: JobStore, ticks: int, *, seed: int = 7, edit_every: int = 200, delete_every: int = 400) -> YearFigures:
    """Run ``ticks`` ticks against ``store``'s table (set up and empty); returns the figures."""
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
            plan = plan_tick(store, known)
            figures.tick_seconds.append(time.perf_counter() - tick_started)
            known.extend(plan.partitions_to_add)
            _count(plan, figures, len(known))
            for run in plan.runs:
                runs.execute(
                    complete_run,
                    {"model_id": MODEL_ID, "chunk_keys": [chunk.chunk_key for chunk in run], "vector": UNIT_VECTOR},
                )
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
