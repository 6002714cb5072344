"""A compressed year of trickling jobs through the sensor's own logic, with its figures.

    python benchmarks/simulated_year.py                      # 20,000 ticks, chunks of 200
    python benchmarks/simulated_year.py --ticks 105120       # a year of 5-minute ticks
    python benchmarks/simulated_year.py --chaos 0.02         # faults on 2% of the runs (last 1,000 ticks quiet)

The same simulation as jobping_pipeline_tests/test_simulated_year.py (see
jobping_pipeline_tests/simulation.py for what a tick does), on a private embedded Postgres in a
temporary folder. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobping_pipeline.demo import generate_jobs, load_demo_jobs  # noqa: E402
from jobping_pipeline.embedded_postgres import embedded_server_url  # noqa: E402
from jobping_pipeline.settings import load_settings  # noqa: E402
from jobping_pipeline.store import JobStore  # noqa: E402
from jobping_pipeline_tests.simulation import MODEL_ID, Chaos, simulate_year  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chaos", type=float, default=0.0, help="chance of a fault for each run (0: none)")
    args = parser.parse_args()

    admin_url = embedded_server_url(Path(tempfile.mkdtemp(prefix="jobping-year-")), "postgres")
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS simulated_year")
        connection.execute("CREATE DATABASE simulated_year")
        connection.execute("ALTER DATABASE simulated_year SET synchronous_commit = off")
    url = admin_url.replace("/postgres?", "/simulated_year?", 1)
    store = JobStore(load_settings({"JOBPING_DATABASE_URL": url, "JOBPING_CHUNK_SIZE": str(args.chunk_size)}))
    load_demo_jobs(store, generate_jobs(0))
    store.setup(384)
    chaos = Chaos(rate=args.chaos, quiet_after=max(args.ticks - 1000, 0)) if args.chaos else None
    year = simulate_year(store, args.ticks, seed=args.seed, chaos=chaos)
    print(year.summary())
    if chaos is not None:
        with store.connect(autocommit=True, vectors=False) as connection:
            most_attempts = connection.execute("SELECT coalesce(max(attempts), 0) FROM jobping_pipeline.job_state").fetchone()[0]
        print(
            "faults: " + ", ".join(f"{count} {fault}" for fault, count in chaos.faults.items())
            + f"; {chaos.runs_failed} runs failed as a whole; run keys repeated: {chaos.repeated_run_keys}; "
            f"longest wait of a chunk with due work for a request: {chaos.longest_wait} ticks "
            f"({chaos.longest_wait_after_quiet} after the last fault); runs still lost: {len(chaos.lost_runs)}; "
            f"most attempts charged to a job: {most_attempts}"
        )
    deep = store.coverage(MODEL_ID)
    print(f"end: {deep.fresh} of {deep.eligible} jobs fresh (deep count), complete={deep.complete}")
    tenths = [year.tick_seconds[i * len(year.tick_seconds) // 10 : (i + 1) * len(year.tick_seconds) // 10] for i in range(10)]
    print("tick median by tenth of the year (ms):", " ".join(f"{1000 * sorted(t)[len(t) // 2]:.1f}" for t in tenths if t))


if __name__ == "__main__":
    main()
