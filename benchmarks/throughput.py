"""Throughput, quality and scale benchmark of jobping-pipeline, side by side in one run.

    python benchmarks/throughput.py --jobs 2000              # (a) bare model, (b) pipeline, (c) old system
    python benchmarks/throughput.py --jobs 3600 --rounds 3   # (b) three times, (a) before and after each
    python benchmarks/throughput.py --jobs 2000 --quality    # + speed and recall@10 of each compute path
    python benchmarks/throughput.py --index-rows 3000        # + write rate with and without an HNSW index
    python benchmarks/throughput.py --scale 1000000          # everything that is not the model, at scale

Everything runs on a private embedded Postgres in a temporary folder; nothing is asserted, the
figures are printed. Ratios are measured in the same process, same model, same settings.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobping_pipeline.store import JobStore
from jobping_pipeline.demo import generate_jobs, load_demo_jobs  # noqa: E402
from jobping_pipeline.embedded_postgres import embedded_server_url  # noqa: E402
from jobping_pipeline.models import Encoder, ModelSpec, load_encoder  # noqa: E402
from jobping_pipeline.sensors import plan_tick  # noqa: E402
from jobping_pipeline.settings import load_settings  # noqa: E402
from jobping_pipeline.texts import build_text, unique_in_order  # noqa: E402

OLD_SYSTEM_BATCH = 50


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def new_database(admin_url: str, name: str, template: str | None = None) -> str:
    """An empty database ``name`` (dropped first if it exists), or a copy of ``template``."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return admin_url.replace("/postgres?", f"/{name}?", 1)


def settings_for(url: str, **extra: str):
    return load_settings({"JOBPING_DATABASE_URL": url, **extra})


def pipeline_texts(store: JobStore) -> list[str]:
    """The distinct texts the pipeline embeds for this table, built the pipeline's way."""
    columns = store.inspect().text_columns
    with store.connect() as connection:
        query = "SELECT " + ", ".join(f'"{c}"' for c in columns) + " FROM jobs ORDER BY id"
        return unique_in_order(build_text(row) for row in connection.execute(query))


@dataclass
class Measured:
    jobs: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def measure_bare(encoder: Encoder, texts: list[str], batch_size: int) -> Measured:
    started = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size)
    return Measured(len(texts), time.perf_counter() - started)


CREATE_DAGSTER_STORAGE = "from dagster import DagsterInstance; DagsterInstance.get().dispose()"


def measure_cli_backfill(
    url: str, data_dir: Path, chunk_size: int, batch_size: int, jobs: int
) -> tuple[Measured, dict[str, float], float, str]:
    """``jobping-pipeline backfill`` as an operator runs it: a new process (imports, Dagster
    instance, model load from the conversion cache), timed from outside; its own timings line
    breaks the time down, and its encoding thread's line says when the model got to work. Dagster's storage exists already, as after any earlier command of an
    installation; the seconds its one-time creation took (database, tables) are returned too."""
    import subprocess

    home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=data_dir))
    shutil.copy(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "JOBPING_DATA_DIR": str(data_dir),
        "JOBPING_DATABASE_URL": url,
        "JOBPING_CHUNK_SIZE": str(chunk_size),
        "JOBPING_BATCH_SIZE": str(batch_size),
    }
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", CREATE_DAGSTER_STORAGE], env=env, check=True)
    created = time.perf_counter() - started
    cli = Path(sys.executable).with_name("jobping-pipeline")
    started = time.perf_counter()
    output = subprocess.run([str(cli), "backfill"], env=env, capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - started
    line = next(line for line in output.splitlines() if line.startswith("timings: "))
    timings = {
        phase.rsplit(" ", 2)[0]: float(phase.rsplit(" ", 2)[1]) for phase in line.removeprefix("timings: ").split(", ")
    }
    assert output.strip().splitlines()[-1].startswith("coverage 100.00%"), output[-2000:]
    thread = next(line for line in output.splitlines() if line.startswith("encoding thread: "))
    return Measured(jobs, seconds), timings, created, thread.removeprefix("encoding thread: ")


def measure_old_system(url: str, encoder: Encoder, columns: tuple[str, ...], jobs: int) -> Measured:
    """What the system we replace did: fetch 50 jobs without an embedding, encode them, UPDATE
    them one row at a time, commit, repeat."""
    select = (
        "SELECT id, " + ", ".join(f'"{c}"' for c in columns)
        + f" FROM jobs WHERE embedding IS NULL ORDER BY id LIMIT {OLD_SYSTEM_BATCH}"
    )
    done = 0
    started = time.perf_counter()
    with psycopg.connect(url) as connection:
        register_vector(connection)
        while True:
            rows = connection.execute(select).fetchall()
            if not rows:
                break
            vectors = encoder.encode([build_text(row[1:]) for row in rows], batch_size=OLD_SYSTEM_BATCH)
            for row, vector in zip(rows, vectors):
                connection.execute("UPDATE jobs SET embedding = %s WHERE id = %s", (vector, row[0]))
            connection.commit()
            done += len(rows)
    return Measured(done, time.perf_counter() - started)


def top_k(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


# Compute paths side by side: (label, ModelSpec fields). torch fp32 is the reference.
QUALITY_PATHS = (
    ("torch fp32", {"backend": "torch", "precision": "fp32"}),
    ("torch bf16 autocast", {"backend": "torch", "precision": "bf16"}),
    ("onnx fp32", {"backend": "onnx"}),
    ("onnx int8 (dynamic)", {"backend": "onnx", "quantization": "int8"}),
    ("openvino int8 (NNCF)", {"backend": "openvino", "quantization": "int8"}),
    ("openvino auto", {"backend": "openvino"}),
    ("openvino fp32", {"backend": "openvino", "precision": "fp32"}),
    ("torch fp32, 128 tokens", {"backend": "torch", "precision": "fp32", "max_seq_length": 128}),
)


def quality(texts: list[str], jobs_for_queries: list, batch_size: int) -> dict[str, float]:
    """Speed and retrieval quality of each compute path against torch fp32 at the model's 256
    tokens, on the same texts. recall@10: overlap of a path's top-10 with fp32's top-10 for the
    same query; hit@10: the job a query was written from is in the top 10. Returns texts/s by path."""
    from jobping_pipeline.models.cpu import cpu_has_bf16

    queries = [f"{job.title} in {job.location.split(',')[0]}" for job in jobs_for_queries]
    sources = [
        texts.index(build_text([job.title, job.company, job.location, job.categories, job.description]))
        for job in jobs_for_queries
    ]
    reference_vectors = reference_top = None
    rates: dict[str, float] = {}
    print(f"\nquality over {len(texts)} texts, {len(queries)} queries (recall@10 vs torch fp32 at 256 tokens)")
    print(f"{'path':<26}{'precision':>10}{'texts/s':>9}{'x fp32':>8}{'recall@10':>11}{'hit@10':>8}{'mean cos':>10}")
    for label, fields in QUALITY_PATHS:
        if fields.get("precision") == "bf16" and not cpu_has_bf16():
            continue
        encoder = load_encoder(ModelSpec(**fields))
        encoder.encode(texts[:32], batch_size)  # warm-up
        started = time.perf_counter()
        vectors = encoder.encode(texts, batch_size)
        measured = Measured(len(texts), time.perf_counter() - started)
        found = top_k(vectors, encoder.encode(queries, batch_size))
        if reference_vectors is None:
            reference_vectors, reference_top = vectors, found
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference_top)])
        hits = np.mean([source in row for source, row in zip(sources, found)])
        cosine = float(np.mean(np.sum(vectors * reference_vectors, axis=1)))
        rates[label] = measured.rate
        print(
            f"{label:<26}{encoder.precision:>10}{measured.rate:>9.1f}{measured.rate / rates['torch fp32']:>8.2f}"
            f"{recall:>11.4f}{hits:>8.3f}{cosine:>10.5f}"
        )
    return rates


def measure_hnsw_search(url: str, encoder: Encoder, jobs_for_queries: list, batch_size: int) -> None:
    """Build time of an HNSW index over the pipeline's vectors, and recall@10 of searches through
    it against exact search, for queries built from the demo data."""
    store = JobStore(settings_for(url))
    queries = [f"{job.title} in {job.location.split(',')[0]}" for job in jobs_for_queries]
    vectors = encoder.encode(queries, batch_size)
    search = "SELECT id FROM jobs ORDER BY embedding <=> %s LIMIT 10"
    with store.connect(autocommit=True) as connection:
        exact = [[row[0] for row in connection.execute(search, (vector,))] for vector in vectors]
        started = time.perf_counter()
        connection.execute("CREATE INDEX bench_search_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)")
        build = time.perf_counter() - started
        rows = connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
        print(f"\nHNSW search index over {rows} vectors (m=16, ef_construction=64): built in {build:.2f} s")
        for ef_search in (40, 100):
            connection.execute(f"SET hnsw.ef_search = {ef_search}")
            started = time.perf_counter()
            found = [[row[0] for row in connection.execute(search, (vector,))] for vector in vectors]
            seconds = time.perf_counter() - started
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
            print(f"  ef_search {ef_search:>3}: recall@10 vs exact {recall:.4f}, {1000 * seconds / len(vectors):.2f} ms/query")
        connection.execute("DROP INDEX bench_search_hnsw")


def measure_index_writes(admin_url: str, rows: int) -> None:
    """Write rate of the pipeline's write path with and without an HNSW index on the column."""
    url = new_database(admin_url, "bench_index")
    settings = settings_for(url)
    store = JobStore(settings)
    load_demo_jobs(store, generate_jobs(rows, seed=3))
    store.setup(384)
    store.register_chunks(scan_table=True)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(rows, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.connect() as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM jobs ORDER BY id")]
    print(f"\nwrites of {rows} vectors, batches of 64 (UPDATE ... FROM unnest, binary)")
    for label, index_sql in (
        ("no vector index", None),
        ("HNSW (m=16, ef_construction=64)", "CREATE INDEX bench_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)"),
    ):
        with store.connect(autocommit=True) as connection:
            connection.execute("UPDATE jobs SET embedding = NULL")
            connection.execute("DROP INDEX IF EXISTS bench_hnsw")
            if index_sql:
                connection.execute(index_sql)
        writer = store.writer_connection()
        started = time.perf_counter()
        for start in range(0, rows, 64):
            batch = ids[start : start + 64]
            store.write_batch(writer, batch, vectors[start : start + 64], [b"x" * 16] * len(batch), [1] * len(batch), "bench")
        seconds = time.perf_counter() - started
        writer.close()
        print(f"  {label:<34}{rows / seconds:>10.0f} rows/s")
    with store.connect(autocommit=True) as connection:
        started = time.perf_counter()
        connection.execute("DROP INDEX bench_hnsw")
        connection.execute("CREATE INDEX bench_hnsw ON jobs USING hnsw (embedding vector_cosine_ops)")
        print(f"  building the HNSW index afterwards on {rows} vectors: {time.perf_counter() - started:.2f} s")


def measure_scale(admin_url: str, jobs: int) -> None:
    """Everything that is not the model, on a table of ``jobs`` rows with random unit vectors."""
    url = new_database(admin_url, "bench_scale")
    settings = settings_for(url)
    store = JobStore(settings)
    load_demo_jobs(store, generate_jobs(0))
    print(f"\nscale: {jobs} jobs")
    started = time.perf_counter()
    with store.connect(autocommit=True, vectors=False) as connection:
        connection.execute(
            "INSERT INTO jobs (title, company, location, description, categories) "
            "SELECT 'Job ' || g, 'Company ' || (g %% 5000), 'City ' || (g %% 300), "
            "repeat('Responsibilities and requirements of the role. ', 20 + g %% 60), ARRAY['Cat ' || (g %% 15)] "
            "FROM generate_series(1, %s) g",
            (jobs,),
        )
    print(f"  load {jobs} rows: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    store.setup(384)
    keys = store.register_chunks(scan_table=False)  # setup queued every job, as in a backfill
    print(f"  setup + register {len(keys)} chunks: {time.perf_counter() - started:.1f} s (target <= 60 s)")
    started = time.perf_counter()
    with store.connect(autocommit=True) as connection:
        connection.execute(
            "UPDATE jobs SET embedding = (SELECT array_agg(x)::vector FROM "
            "(SELECT random() - 0.5 + 0 * length(jobs.title) AS x FROM generate_series(1, 384)) r)"
        )
        connection.execute("UPDATE jobs SET embedding = l2_normalize(embedding)")
        connection.execute(
            "UPDATE jobping_pipeline.job_state SET embedded_version = text_version, "
            "model_id = 'sentence-transformers/all-MiniLM-L6-v2', text_hash = '\\x00'"
        )
        connection.execute("VACUUM ANALYZE jobs")
        connection.execute("VACUUM ANALYZE jobping_pipeline.job_state")
    print(f"  pre-fill random unit vectors: {time.perf_counter() - started:.1f} s")
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        plan = plan_tick(store, keys)
        timings.append(time.perf_counter() - started)
        assert not plan.chunks_to_run and not plan.new_chunks
    print(f"  idle sensor tick: median {1000 * sorted(timings)[2]:.0f} ms (target <= 100 ms)")
    from jobping_pipeline.checks import evaluate_coverage, evaluate_deep_coverage

    for label, evaluate, target in (
        ("coverage check (from the state, every 5 minutes)", evaluate_coverage, "<= 0.5 s"),
        ("deep coverage check (joins the jobs table, hourly)", evaluate_deep_coverage, "hourly, no target"),
    ):
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            result = evaluate(store, "sentence-transformers/all-MiniLM-L6-v2")
            timings.append(time.perf_counter() - started)
        print(
            f"  {label}: median {sorted(timings)[1]:.2f} s ({target}), "
            f"passed={result.passed}, eligible={result.metadata['eligible'].value}"
        )
    with store.connect() as connection:
        started = time.perf_counter()
        rows = store.read_chunk(connection, keys[len(keys) // 2], "bench/other-model")
        print(f"  read one chunk ({len(rows)} jobs): {1000 * (time.perf_counter() - started):.0f} ms")


RUN_IN_CHILD = """
import resource, sys
from dagster import DagsterInstance
from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.settings import load_settings
settings = load_settings({"JOBPING_DATABASE_URL": sys.argv[1], "JOBPING_CHUNK_SIZE": sys.argv[2]})
with DagsterInstance.ephemeral() as instance:
    assert run_backfill(settings, instance, say=lambda line: None).complete
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def measure_run_rss(admin_url: str, chunk_sizes: list[int]) -> None:
    """Peak RSS of a process that backfills one chunk of each size (model load included)."""
    import subprocess

    print("\npeak RSS of a backfill process embedding one chunk (model, Dagster and data)")
    for size in chunk_sizes:
        url = new_database(admin_url, f"bench_rss_{size}")
        load_demo_jobs(JobStore(settings_for(url)), generate_jobs(size, seed=5))
        started = time.perf_counter()
        output = subprocess.run(
            [sys.executable, "-c", RUN_IN_CHILD, url, str(size)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip().splitlines()[-1]
        print(f"  chunk of {size:>6} jobs: {output} MB ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="demo jobs for (a)/(b)/(c); 0 skips them")
    parser.add_argument("--rounds", type=int, default=1, help="(b) this many times between measurements of (a)")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default=os.environ.get("JOBPING_PRECISION", "auto"))
    parser.add_argument("--backend", default=os.environ.get("JOBPING_BACKEND", "auto"), help="JOBPING_BACKEND for (a), (b), (c)")
    parser.add_argument("--quality", action="store_true", help="speed and recall@10 of each compute path")
    parser.add_argument("--quality-texts", type=int, default=1200, help="texts for --quality (a uniform sample); 0: all")
    parser.add_argument("--hnsw", action="store_true", help="HNSW search index: build time and recall@10")
    parser.add_argument("--index-rows", type=int, default=0, help="measure writes with an HNSW index")
    parser.add_argument("--scale", type=int, default=0, help="jobs for the scale benchmark")
    parser.add_argument("--run-rss", default="", help="comma-separated chunk sizes: peak RSS of a run each")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")

    os.environ["JOBPING_PRECISION"] = args.precision
    os.environ["JOBPING_BACKEND"] = args.backend
    os.environ["JOBPING_BATCH_SIZE"] = str(args.batch_size)
    data_dir = Path(tempfile.mkdtemp(prefix="jobping-bench-"))
    # Removed at exit, after the embedded server has stopped (its own exit handler, registered
    # later, runs first): a make bench leaves 0.3-6 GB of databases in it.
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    admin_url = embedded_server_url(data_dir, "postgres")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")

    if args.jobs:
        encoder = load_encoder(ModelSpec(precision=args.precision, backend=args.backend))  # converted once if need be
        print(
            f"model: {encoder.model_id}, backend {encoder.backend} on {encoder.device}, precision {encoder.precision}, "
            f"batch {args.batch_size}"
        )
        template_url = new_database(admin_url, "bench_template")
        load_demo_jobs(JobStore(settings_for(template_url)), generate_jobs(args.jobs, seed=1))
        pipeline_url = new_database(admin_url, "bench_pipeline", template="bench_template")
        store = JobStore(settings_for(pipeline_url))
        texts = pipeline_texts(store)
        old_url = new_database(admin_url, "bench_old")
        old_store = JobStore(settings_for(old_url))
        load_demo_jobs(old_store, generate_jobs(args.jobs, seed=1))
        old_store.setup(encoder.dimensions)
        encoder.encode(texts[:32], args.batch_size)  # warm-up, same for all

        # (a) just before and just after each (b), averaged: this machine's speed drifts by several
        # percent from one half-minute to the next, more than the overhead being measured. With
        # --rounds N: a b a b ... a, (b)/(a) per round and its median.
        bares = [measure_bare(encoder, texts, args.batch_size)]
        rounds = []
        for round_number in range(args.rounds):
            url = pipeline_url if round_number == 0 else new_database(admin_url, f"bench_pipeline_{round_number}", template="bench_template")
            rounds.append(measure_cli_backfill(url, data_dir, args.chunk_size, args.batch_size, args.jobs))
            bares.append(measure_bare(encoder, texts, args.batch_size))

        def bare_around(k: int) -> Measured:
            return Measured(len(texts), (bares[k].seconds + bares[k + 1].seconds) / 2)

        ratios = [rounds[k][0].rate / bare_around(k).rate for k in range(args.rounds)]
        middle = sorted(range(args.rounds), key=lambda k: ratios[k])[args.rounds // 2]
        pipeline, timings, storage_created, encoding_thread = rounds[middle]
        bare = bare_around(middle)
        old = measure_old_system(old_url, encoder, store.inspect().text_columns, args.jobs)
        fp32 = measure_bare(load_encoder(ModelSpec(backend="torch", precision="fp32")), texts, args.batch_size)
        print(f"\n{args.jobs} demo jobs ({len(texts)} distinct texts), chunks of {args.chunk_size}")
        if args.rounds > 1:
            for k, ((measured, _, _, _), ratio) in enumerate(zip(rounds, ratios)):
                print(
                    f"  round {k + 1}: (a) {bares[k].seconds:.1f} s before, {bares[k + 1].seconds:.1f} s after; "
                    f"(b) {measured.seconds:.1f} s; (b)/(a) {ratio:.3f}"
                )
            print(f"  the median round ({middle + 1}) below; (b)/(a) over the rounds: {', '.join(f'{r:.3f}' for r in ratios)}")
        print(
            f"  (a) bare model.encode of the distinct texts: {bare.rate:7.1f} texts/s  ({bare.seconds:.1f} s: "
            f"{bares[middle].seconds:.1f} s before (b), {bares[middle + 1].seconds:.1f} s after)"
        )
        print(f"  (b) `jobping-pipeline backfill`, end to end:  {pipeline.rate:7.1f} jobs/s   ({pipeline.seconds:.1f} s, a new process)")
        print(f"  (c) old system (50 at a time, row UPDATEs):  {old.rate:7.1f} jobs/s   ({old.seconds:.1f} s)")
        print(f"  (d) bare torch fp32 (the seed's compute):    {fp32.rate:7.1f} texts/s  ({fp32.seconds:.1f} s)")
        print(f"  (b)/(a) = {pipeline.rate / bare.rate:.3f}   (b)/(c) = {pipeline.rate / old.rate:.2f}   (b)/(d) = {pipeline.rate / fp32.rate:.2f}")
        inside = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
        print(f"  (b) breakdown: {inside}; process exit and the rest {pipeline.seconds - sum(timings.values()):.1f} s")
        print(f"  (b) encoding thread: {encoding_thread}")
        print(
            f"  (b) ran on an installation whose Dagster storage exists; a process that only created it "
            f"(Python, Dagster's imports, the database and its tables) took {storage_created:.1f} s, once"
        )
        print(f"  peak RSS of this process: {peak_rss_mb():.0f} MB")
        sample = texts[:: max(1, len(texts) // args.quality_texts)] if args.quality_texts else texts
        if args.hnsw:
            measure_hnsw_search(pipeline_url, encoder, list(generate_jobs(args.jobs, seed=1))[:: max(1, args.jobs // 200)], args.batch_size)
        if args.quality:
            in_sample = set(sample)
            query_jobs = [
                job for job in generate_jobs(args.jobs, seed=1)
                if build_text([job.title, job.company, job.location, job.categories, job.description]) in in_sample
            ]
            quality(sample, query_jobs[:: max(1, len(query_jobs) // 200)], args.batch_size)
    if args.index_rows:
        measure_index_writes(admin_url, args.index_rows)
    if args.scale:
        measure_scale(admin_url, args.scale)
    if args.run_rss:
        measure_run_rss(admin_url, [int(size) for size in args.run_rss.split(",")])
    print(f"\npeak RSS of this process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
