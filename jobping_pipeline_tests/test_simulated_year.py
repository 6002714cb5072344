"""A compressed year of trickling jobs through the sensor's own logic on a real database
(simulation.py says what a tick does): partitions, runs and tick time stay bounded, and every job
ends fresh. benchmarks/simulated_year.py prints the same figures for longer years."""

import math

import psycopg

from jobping_pipeline.store import JobStore

from .helpers import load_demo, make_settings
from .simulation import MODEL_ID, simulate_year

TICKS = 20_000
CHUNK_SIZE = 200


def test_a_year_of_trickling_jobs_keeps_partitions_runs_and_ticks_bounded(database_url):
    with psycopg.connect(database_url, autocommit=True) as connection:
        # Durability is not under test: without a WAL flush per commit the year takes a third of the time.
        connection.execute(f"ALTER DATABASE {connection.info.dbname} SET synchronous_commit = off")
    settings = make_settings(database_url, JOBPING_CHUNK_SIZE=str(CHUNK_SIZE))
    store = load_demo(settings, 0)
    store.setup(384)

    year = simulate_year(store, TICKS)
    print(year.summary())

    assert year.ticks == TICKS and year.jobs_inserted > 200_000
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
