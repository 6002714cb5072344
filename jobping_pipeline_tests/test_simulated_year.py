"""A compressed year of trickling jobs through the sensor's own logic on a real database
(simulation.py says what a tick does): partitions, runs and tick time stay bounded, and every job
ends fresh. benchmarks/simulated_year.py prints the same figures for longer years."""

import math

import psycopg

from jobping_pipeline.sensors import BACKOFF_CAP_TICKS
from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings
from .simulation import MODEL_ID, Chaos, simulate_year

TICKS = 6_000
CHUNK_SIZE = 200
CHAOS_TICKS = 3_000
QUIET_TICKS = 300


def empty_table(database_url):
    with psycopg.connect(database_url, autocommit=True) as connection:
        # Durability is not under test: without a WAL flush per commit the year takes a third of the time.
        connection.execute(f"ALTER DATABASE {connection.info.dbname} SET synchronous_commit = off")
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE=str(CHUNK_SIZE))
    store = load_demo(settings, 0)
    store.setup(384)
    return settings, store


def test_a_year_of_trickling_jobs_keeps_partitions_runs_and_ticks_bounded(database_url):
    settings, store = empty_table(database_url)

    year = simulate_year(store, TICKS)
    print(year.summary())

    assert year.ticks == TICKS and year.jobs_inserted > 60_000
    assert year.jobs_edited > 1_000 and year.jobs_deleted > 500
    assert year.most_partitions_over_bound <= 0, "partitions stay within jobs / chunk size + 2"
    assert year.partitions >= math.ceil(year.jobs_inserted / CHUNK_SIZE), "every job has a chunk"
    assert year.most_runs_over_bound <= 0, "a tick requests at most ceil(dirty chunks / 10) runs"
    assert year.most_dirty_chunks_in_a_tick > 10, "some burst spanned more than one run's worth of chunks"
    assert year.runs - year.burst_runs == year.ticks_with_work, "every tick with work requested a run"
    assert year.tick_ms(first=False) <= 2 * year.tick_ms(first=True) + 2, "tick time does not grow with the year"

    deep, fast = JobStore(settings).coverage(MODEL_ID), JobStore(settings).state_coverage(MODEL_ID)
    assert deep.complete and deep.eligible == year.jobs_inserted - year.jobs_deleted
    assert fast == deep


def test_a_chaos_year_strands_no_job(database_url):
    """Runs failing as a whole, terminated, canceled while queued, workers killed (left STARTED),
    API outages of 1-10 ticks, at random ticks; then a quiet end. benchmarks/simulated_year.py
    --chaos runs a longer one."""
    settings, store = empty_table(database_url)
    chaos = Chaos(rate=0.05, quiet_after=CHAOS_TICKS - QUIET_TICKS)
    year = simulate_year(store, CHAOS_TICKS, seed=11, chaos=chaos)
    print(
        year.summary(), chaos.faults,
        f"longest wait for a request: {chaos.longest_wait} ticks, after the last fault: {chaos.longest_wait_after_quiet}",
    )

    assert all(count > 0 for count in chaos.faults.values()), chaos.faults
    assert chaos.repeated_run_keys == 0, "two requests never share a run key"
    assert 0 < chaos.longest_wait <= BACKOFF_CAP_TICKS + 5, "no chunk with due work waits past the backoff"
    assert chaos.longest_wait_after_quiet <= BACKOFF_CAP_TICKS + 5
    assert chaos.lost_runs == {}, "every run whose worker was killed was seen as ended"
    deep = JobStore(settings).coverage(MODEL_ID)
    assert deep.complete and deep.eligible == year.jobs_inserted - year.jobs_deleted
    with psycopg.connect(database_url) as connection:
        assert connection.execute("SELECT max(attempts) FROM jobping_pipeline.job_state").fetchone()[0] == 0, (
            "no job is charged an attempt for an infrastructure fault"
        )
