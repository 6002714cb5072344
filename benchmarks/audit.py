"""The vector audit: what it finds, how often its sample finds what only a model can see, and
what it costs at scale. Figures, not assertions.

    python benchmarks/audit.py                       # 10,000 jobs, 1% made wrong each way, 20 sample runs
    python benchmarks/audit.py --jobs 1000000 --distinct 50 --runs 2 --skip-all   # the cost at 1M jobs

The table holds ``--jobs`` demo postings built from ``--distinct`` distinct ones (so every vector
can be the model's own without encoding the whole table), written through the pipeline's own
write path (``WriteStore.write_batch``: the vectors, their state and their digests). Then 1% of
the jobs are made wrong in each of three ways with the triggers disabled (a text edit, a vector
of another row, a vector from another writer): ``audit`` must find every one of them. Another 1%
get a vector that is not the model's but whose recorded digest matches (what a model folder
replaced in place, or a writer that also forged the state, leaves): only embedding again finds
those, and the scheduled check's sample of ``--sample`` is run ``--runs`` times to count how
often it finds at least one, against the promised 1 - (1 - f) ** n.
"""

from __future__ import annotations

import argparse
import atexit
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobping_pipeline.audit import DEFAULT_SAMPLE, audit, detection_probability  # noqa: E402
from jobping_pipeline.demo import generate_jobs, load_demo_jobs  # noqa: E402
from jobping_pipeline.embedded_postgres import embedded_server_url  # noqa: E402
from jobping_pipeline.models import ModelSpec, load_encoder  # noqa: E402
from jobping_pipeline.store import JobStore  # noqa: E402
from jobping_pipeline.texts import build_text, text_hash  # noqa: E402

from benchmarks.throughput import new_database, settings_for  # noqa: E402

WRITE_BATCH = 5000


def build_table(url: str, jobs: int, distinct: int, encoder) -> JobStore:
    """``jobs`` rows repeating ``distinct`` demo postings, each holding the model's vector of its
    text, written and recorded by the pipeline's own write path."""
    settings = settings_for(url, JOBPING_CHUNK_SIZE="1000")
    store = JobStore(settings)
    pool = list(generate_jobs(distinct, seed=7))
    load_demo_jobs(store, (pool[index % distinct] for index in range(jobs)), id_type="integer")
    store.setup(encoder.dimensions)
    store.register_chunks(scan_table=False)
    columns = store.inspect().text_columns
    with store.connect() as connection:
        rows = connection.execute(
            "SELECT s.job_id, s.text_version, " + ", ".join(f'j."{c}"' for c in columns)
            + " FROM jobping_pipeline.job_state s JOIN jobs j ON j.id = s.job_id ORDER BY s.job_id"
        ).fetchall()
    texts = [build_text(row[2:]) for row in rows]
    distinct_texts = list(dict.fromkeys(texts))
    vectors = dict(zip(distinct_texts, encoder.encode(distinct_texts, batch_size=64)))
    with store.writer_connection() as connection:
        for start in range(0, len(rows), WRITE_BATCH):
            part = range(start, min(start + WRITE_BATCH, len(rows)))
            store.write_batch(
                connection,
                [rows[i][0] for i in part],
                np.stack([vectors[texts[i]] for i in part]),
                [text_hash(texts[i]) for i in part],
                [rows[i][1] for i in part],
                encoder.model_id,
            )
    return store


def spoil(url: str, jobs: int, fraction: float, seed: int) -> dict[str, set[int]]:
    """A fraction of the jobs made wrong in each way, with the triggers disabled."""
    rng = random.Random(seed)
    ids = rng.sample(range(1, jobs + 1), 4 * max(1, int(jobs * fraction)))
    quarter = len(ids) // 4
    ways = {
        "text edited": set(ids[:quarter]),
        "vectors swapped": set(ids[quarter : 2 * quarter]),
        "foreign vector": set(ids[2 * quarter : 3 * quarter]),
        "not the model's, digest forged": set(ids[3 * quarter :]),
    }
    swapped = sorted(ways["vectors swapped"])
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER TABLE jobs DISABLE TRIGGER ALL")
        connection.execute(
            "UPDATE jobs SET description = coalesce(description, '') || ' (edited)' WHERE id = ANY(%s)",
            (sorted(ways["text edited"]),),
        )
        for a, b in zip(swapped[0::2], swapped[1::2]):
            connection.execute(
                "UPDATE jobs j SET embedding = o.embedding FROM jobs o WHERE (j.id, o.id) IN ((%s, %s), (%s, %s))",
                (a, b, b, a),
            )
        connection.execute(
            "UPDATE jobs SET embedding = (SELECT array_agg(0.05)::vector FROM generate_series(1, 384)) WHERE id = ANY(%s)",
            (sorted(ways["foreign vector"]),),
        )
        forged = sorted(ways["not the model's, digest forged"])
        connection.execute(
            "UPDATE jobs SET embedding = (SELECT array_agg(CASE WHEN i = 1 THEN 1.0 ELSE 0.0 END)::vector "
            "FROM generate_series(1, 384) i) WHERE id = ANY(%s)",
            (forged,),
        )
        connection.execute(
            "UPDATE jobping_pipeline.job_state s SET vector_hash = decode(md5(vector_send(j.embedding)), 'hex') "
            "FROM jobs j WHERE j.id = s.job_id AND s.job_id = ANY(%s)",
            (forged,),
        )
        connection.execute("ALTER TABLE jobs ENABLE TRIGGER ALL")  # the next setup makes ours ALWAYS again
    return ways


class NothingQueued(JobStore):
    """For repeated sample runs over the same wrong jobs: the audit's finds are not queued."""

    def queue_for_repair(self, problems) -> int:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=200, help="distinct postings the table repeats")
    parser.add_argument("--fraction", type=float, default=0.01, help="fraction of jobs made wrong in each way")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE)
    parser.add_argument("--runs", type=int, default=20, help="sample runs counted for the detection rate")
    parser.add_argument("--skip-all", action="store_true", help="skip the --all pass (it embeds every job again)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="jobping-audit-bench-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    url = new_database(embedded_server_url(data_dir, "postgres"), "audit_bench")
    encoder = load_encoder(ModelSpec())
    started = time.perf_counter()
    store = build_table(url, args.jobs, args.distinct, encoder)
    print(f"table: {args.jobs} jobs ({args.distinct} distinct postings), embedded and recorded in {time.perf_counter() - started:.1f} s")
    ways = spoil(url, args.jobs, args.fraction, seed=1)
    print("made wrong: " + ", ".join(f"{len(ids)} {way}" for way, ids in ways.items()))

    report = audit(store, encoder.spec, lambda: encoder, sample=0)
    found = {problem.job_id for problem in report.problems}
    for way, ids in ways.items():
        print(f"  digests alone found {len(ids & found)} of {len(ids)} {way}")
    print(
        f"digest sweep: {report.audited} jobs in {report.sweep_seconds:.2f} s "
        f"({report.audited / report.sweep_seconds:,.0f} jobs/s), {len(report.problems)} problems, queued {report.queued}"
    )

    if args.runs:
        forged = ways["not the model's, digest forged"]
        sampling = NothingQueued(store.settings)
        hits, seconds = 0, 0.0
        for run in range(args.runs):
            result = audit(sampling, encoder.spec, lambda: encoder, sample=args.sample, seed=run)
            hits += any(problem.job_id in forged for problem in result.problems)
            seconds += result.model_seconds
        share = len(forged) / (args.jobs - sum(len(ids) for way, ids in ways.items() if way != "not the model's, digest forged"))
        print(
            f"sample of {args.sample}: found at least one forged vector in {hits} of {args.runs} runs; promised "
            f"{detection_probability(share, args.sample):.1%} for a share of {share:.2%}; "
            f"{args.sample / (seconds / args.runs):.1f} texts/s embedded again ({seconds / args.runs:.1f} s a run, "
            f"beside a digest sweep of {result.sweep_seconds:.1f} s)"
        )
    if args.runs and not args.skip_all:
        full = audit(store, encoder.spec, lambda: encoder, everything=True)
        print(
            f"--all: {len(forged & {p.job_id for p in full.problems})} of {len(forged)} forged found, "
            f"{full.sampled} jobs embedded again in {full.model_seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
