"""The openai provider end to end against a real OpenAI-compatible server, beside the local one.

    python benchmarks/openai_backfill.py --jobs 600 --infinity .venv-infinity/bin/infinity_emb

Starts Infinity (``infinity-emb``, in a virtualenv of its own: it pins click<8.2, which Dagster
cannot use) serving the bundled all-MiniLM-L6-v2 folder on 127.0.0.1, offline, on the CPU. Then,
on a private embedded Postgres with the same demo jobs in two databases, runs the real
``jobping-pipeline backfill`` twice: ``JOBPING_PROVIDER=openai`` through Infinity, and the local
sentence-transformers provider. Prints jobs/s of both and how close the two sets of vectors are
(same weights, so cosine near 1). Figures, not assertions, except that both backfills complete.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from jobping_pipeline.demo import generate_jobs, load_demo_jobs  # noqa: E402
from jobping_pipeline.embedded_postgres import embedded_server_url  # noqa: E402
from jobping_pipeline.models import bundled_model_path  # noqa: E402
from jobping_pipeline.settings import load_settings  # noqa: E402
from jobping_pipeline.store import JobStore  # noqa: E402
from throughput import new_database  # noqa: E402  (beside this file)

SERVED_MODEL = "all-minilm-l6-v2"
SUMMARY = re.compile(r"coverage (?P<percent>[\d.]+)%: (?P<fresh>\d+) of (?P<eligible>\d+) jobs.*\((?P<embedded>\d+) embedded")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_infinity(executable: str, port: int, log_path: Path) -> subprocess.Popen:
    """Infinity serving the bundled model folder; no hub, no telemetry."""
    command = [
        executable, "v2",
        "--model-id", str(bundled_model_path()),
        "--served-model-name", SERVED_MODEL,
        "--engine", "torch",
        "--device", "cpu",
        "--host", "127.0.0.1",
        "--port", str(port),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    log = log_path.open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_healthy(server: subprocess.Popen, port: int, log_path: Path, timeout: float = 300) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise SystemExit(f"infinity exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"infinity was not healthy within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def backfill(env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``jobping-pipeline backfill``: wall seconds, jobs embedded, its summary line."""
    command = [str(Path(sys.executable).parent / "jobping-pipeline"), "backfill"]
    started = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, cwd=PROJECT_DIR)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"backfill failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    summary = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.search(summary)
    if match is None or match["fresh"] != match["eligible"]:
        raise SystemExit(f"backfill did not reach 100%: {summary}")
    return seconds, int(match["embedded"]), summary


def vectors(url: str) -> np.ndarray:
    with psycopg.connect(url) as connection:
        register_vector(connection)
        rows = connection.execute("SELECT embedding FROM jobs ORDER BY id").fetchall()
    return np.stack([row[0].to_numpy() for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--infinity", required=True, help="the infinity_emb executable of its own virtualenv")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jobping-bench-openai-"))
    dagster_home = work / "dagster-home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_DIR / "dagster.yaml", dagster_home / "dagster.yaml")
    data_dir = work / "data"
    os.environ.update({"JOBPING_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(dagster_home)})
    admin_url = embedded_server_url(data_dir, "postgres")
    urls = {}
    for provider in ("openai", "local"):
        urls[provider] = new_database(admin_url, f"bench_{provider}")
        load_demo_jobs(JobStore(load_settings({"JOBPING_DATABASE_URL": urls[provider]})), generate_jobs(args.jobs, seed=1))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.jobs} demo jobs in each of two databases, chunks of {args.chunk_size}")

    port = free_port()
    log_path = work / "infinity.log"
    server = start_infinity(args.infinity, port, log_path)
    try:
        ready = wait_until_healthy(server, port, log_path)
        print(f"infinity serving {SERVED_MODEL} (the bundled folder) on 127.0.0.1:{port}, ready in {ready:.1f} s")
        common = {"JOBPING_CHUNK_SIZE": str(args.chunk_size)}
        remote = backfill(
            {
                **common,
                "JOBPING_DATABASE_URL": urls["openai"],
                "JOBPING_PROVIDER": "openai",
                "JOBPING_MODEL": SERVED_MODEL,
                "OPENAI_BASE_URL": f"http://127.0.0.1:{port}",
                "OPENAI_API_KEY": "not-needed-by-a-local-server",
            }
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = backfill({**common, "JOBPING_DATABASE_URL": urls["local"]})

    print("\n`jobping-pipeline backfill`, wall time of the whole command (process start, setup, Dagster runs):")
    for name, (seconds, embedded, summary) in (("openai provider via Infinity", remote), ("local provider", local)):
        print(f"  {name:<29} {embedded / seconds:6.1f} jobs/s  ({embedded} jobs, {seconds:.1f} s)  | {summary}")
    print(f"  openai/local = {(remote[1] / remote[0]) / (local[1] / local[0]):.2f}")
    cosines = np.sum(vectors(urls["openai"]) * vectors(urls["local"]), axis=1)
    print(f"  cosine of each job's two vectors: min {cosines.min():.5f}, mean {cosines.mean():.5f}")
    print(f"(databases and Infinity's log are left in {work})")


if __name__ == "__main__":
    main()
