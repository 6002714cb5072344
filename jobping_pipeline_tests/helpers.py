"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import psycopg
from dagster import build_sensor_context

from jobping_pipeline.backfill import run_backfill
from jobping_pipeline.store import JobStore
from jobping_pipeline.demo import generate_jobs, load_demo_jobs
from jobping_pipeline.definitions import EMBED_JOB, build_definitions
from jobping_pipeline.partitions import JOB_CHUNKS
from jobping_pipeline.resources import build_resources
from jobping_pipeline.sensors import SENSOR_NAME
from jobping_pipeline.settings import Settings, load_settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def make_settings(database_url: str, **overrides: str) -> Settings:
    env = {"JOBPING_DATABASE_URL": database_url}
    env.update(overrides)
    return load_settings(env)


def load_demo(settings: Settings, jobs: int, *, id_type: str = "integer", seed: int = 0) -> JobStore:
    store = JobStore(settings)
    load_demo_jobs(store, generate_jobs(jobs, seed=seed), id_type=id_type)
    return store


def backfilled(database_url: str, instance, jobs: int, **overrides: str) -> Settings:
    """Settings for a table of ``jobs`` demo jobs, fully embedded by a real backfill."""
    settings = make_settings(database_url, **overrides)
    load_demo(settings, jobs)
    assert run_backfill(settings, instance, say=lambda line: None).complete
    return settings


def execute(settings: Settings, *statements: str) -> None:
    """Run SQL on the jobs database as the application (or an operator) would, each committed."""
    with psycopg.connect(settings.database_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def assert_each_holds_the_models_vector_of_its_text(settings: Settings, encoder, job_ids) -> None:
    """Each of ``job_ids`` is a row of the jobs table whose stored vector is ``encoder``'s vector
    of the row's current text (cosine > 0.999)."""
    from pgvector.psycopg import register_vector

    from jobping_pipeline.texts import build_text

    with psycopg.connect(settings.database_url) as connection:
        register_vector(connection)
        rows = connection.execute(
            "SELECT id, title, company, location, categories, description, embedding FROM jobs WHERE id = ANY(%s) ORDER BY id",
            (list(job_ids),),
        ).fetchall()
    assert [row[0] for row in rows] == sorted(job_ids)
    vectors = encoder.encode([build_text(row[1:6]) for row in rows], batch_size=16)
    for row, vector in zip(rows, vectors):
        assert float(row[6].to_numpy() @ vector) > 0.999, f"job {row[0]}"


def charged_jobs(store: JobStore, model_id: str) -> list:
    """The problem jobs charged at least one attempt (an outage must leave this empty)."""
    return [problem for problem in store.problem_jobs(model_id) if problem.attempts]


def around_model_calls(monkeypatch, encoder, before: Callable[[Sequence[str]], None]) -> None:
    """``before(texts)`` ahead of every model call of ``encoder``'s type: the runs' ``encode`` and
    the encoding thread's ``encode_batches``. It may raise, to fail the call."""
    encoder_type = type(encoder)
    real_encode, real_encode_batches = encoder_type.encode, encoder_type.encode_batches

    def encode(self, texts, batch_size):
        before(texts)
        return real_encode(self, texts, batch_size)

    def encode_batches(self, texts, batch_size, stopped=lambda: False):
        before(texts)
        yield from real_encode_batches(self, texts, batch_size, stopped)

    monkeypatch.setattr(encoder_type, "encode", encode)
    monkeypatch.setattr(encoder_type, "encode_batches", encode_batches)


def refuse_poison(monkeypatch, encoder) -> None:
    """The model raises for any call holding a text with 'POISON' in it (an injected failure:
    no real text makes this model fail)."""

    def refuse(texts):
        if any("POISON" in text for text in texts):
            raise RuntimeError("injected model failure")

    around_model_calls(monkeypatch, encoder, refuse)


def kill_when(process: subprocess.Popen, reached: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``reached()`` holds (checked every 50 ms)."""
    try:
        deadline = time.monotonic() + timeout
        while not reached():
            assert process.poll() is None, process.stderr.read() if process.stderr else "the process ended"
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``jobping-pipeline`` (or another console script) in a subprocess."""
    command = list(args)
    executable = Path(sys.executable).parent / command[0]
    if executable.exists():
        command[0] = str(executable)
    return subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_DIR,
    )


def tick(settings, instance):
    """Evaluate the sensor once through Dagster's sensor testing API, applying its partitions."""
    sensor = build_definitions(settings).resolve_sensor_def(SENSOR_NAME)
    context = build_sensor_context(instance=instance, resources=build_resources(settings))
    result = sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(JOB_CHUNKS, list(request.partition_keys))
    return result


def execute_request(settings, instance, request, **options):
    """Execute one run a tick requested (a partition or a partition range), as the daemon would."""
    job = build_definitions(settings).resolve_job_def(EMBED_JOB)
    if request.partition_key is not None:
        return job.execute_in_process(instance=instance, partition_key=request.partition_key, **options)
    ranged = {tag: value for tag, value in request.tags.items() if tag.startswith("dagster/asset_partition_range")}
    return job.execute_in_process(instance=instance, tags=ranged, **options)


def run_chunks(settings, instance, result):
    """Execute the runs a tick requested, as the daemon would."""
    for request in result.run_requests:
        assert execute_request(settings, instance, request).success


def requested(result):
    """The dirty chunks a tick requested runs for, in order, whatever runs they were grouped in."""
    return [key for request in result.run_requests for key in request.tags["jobping/chunks"].split(",")]
