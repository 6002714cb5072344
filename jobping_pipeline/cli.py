"""``jobping-pipeline``: setup, demo data and backfills from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from jobping_pipeline.settings import ConfigError, load_settings

# Exit codes (README, "Exit codes"; docs/operations.md, "Troubleshooting").
EXIT_INCOMPLETE = 1  # ran, but not every eligible job is fresh (or the audit found problems)
EXIT_CONFIG = 2  # a setting is wrong, or the jobs database cannot be reached at all
EXIT_UNAVAILABLE = 3  # a service failed mid-command: the database went away, the API is down, the GPU is lost
EXIT_PERMISSION = 4  # the database role lacks a privilege
EXIT_INTERRUPTED = 130
AUDIT_LISTED_NOT_FRESH = 200


def ensure_dagster_home() -> Path:
    """Dagster keeps its instance (runs, partitions) where ``dagster.yaml`` is. Default to the
    project folder: the current directory, else the checkout this package was installed from."""
    configured = os.environ.get("DAGSTER_HOME", "").strip()
    if configured:
        return Path(configured)
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "dagster.yaml").is_file():
            os.environ["DAGSTER_HOME"] = str(candidate)
            return candidate
    raise ConfigError(
        "DAGSTER_HOME is not set and no dagster.yaml was found here: "
        "export DAGSTER_HOME=<the folder with this project's dagster.yaml>"
    )


def _configured():
    """The store and the model resource, from the same resources the code location builds."""
    from jobping_pipeline.resources import build_resources, resolved

    resources = build_resources(load_settings())
    return resolved(resources["jobs_database"]).store(), resolved(resources["embedding_model"])


def _setup(args: argparse.Namespace) -> int:
    store, embedding_model = _configured()
    store.inspect()
    changes = store.setup(embedding_model.encoder().dimensions)
    if args.index == "hnsw":
        built = store.create_hnsw_index()
        if built:
            changes.append(f"built HNSW index {built[0]} in {built[1]:.1f} s")
    for change in changes:
        print(f"setup: {change}")
    print("setup: nothing to change" if not changes else f"setup: {len(changes)} changes made")
    return 0


def _search(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    store, embedding_model = _configured()
    encoder = embedding_model.encoder()
    store.check_dimensions(encoder.dimensions, encoder.model_id)
    query_vector = encoder.encode([args.query], batch_size=1)[0]
    rows = store.nearest_jobs(query_vector, args.limit)
    columns = ["id", "score", *store.inspect().text_columns[:3]]
    frame = pd.DataFrame(rows, columns=columns)
    frame["score"] = frame["score"].astype(float)
    if args.json:
        print(json.dumps(frame.to_dict(orient="records"), indent=2, default=str))
    elif frame.empty:
        print("no embedded jobs yet: run `jobping-pipeline backfill`")
    else:
        for column in columns[2:]:
            frame[column] = frame[column].map(lambda value: ", ".join(value) if isinstance(value, list) else value)
        print(frame.to_string(index=False, max_colwidth=48))
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    from jobping_pipeline.demo import generate_jobs, load_demo_jobs
    from jobping_pipeline.progress import counted

    store, _ = _configured()
    existing = store.existing_job_count()
    if existing and not args.append:
        print(
            f"demo-data: {store.settings.jobs_table} already holds {existing} jobs; nothing loaded "
            "(--append adds more)"
        )
        return 0
    jobs = counted(generate_jobs(args.jobs, seed=args.seed), args.jobs, "demo-data")
    count = load_demo_jobs(store, jobs, id_type=args.id_type)
    print(f"demo-data: loaded {count} jobs into {store.settings.jobs_table} ({store.display_url})")
    return 0


def _seconds_since_process_start() -> float:
    """From the kernel's start time of this process: the interpreter's own start included."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _hold_storage_connections(instance) -> None:
    """dagster-postgres opens a new connection for every event it stores (about 60 per run, a
    fifth of a run's own cost); a backfill making many runs in one process keeps a pooled one
    instead, as Dagster's webserver does. No statement timeout, as without the pool."""
    optimize = getattr(instance, "optimize_for_webserver", None)
    if optimize is not None:
        optimize(statement_timeout=0, pool_recycle=3600, max_overflow=4)


def _backfill(args: argparse.Namespace) -> int:
    import signal
    import time

    from jobping_pipeline.encoding_ahead import start_encoding_ahead

    started = time.perf_counter() - _seconds_since_process_start()
    settings = load_settings()
    ensure_dagster_home()
    # Loads the model, plans the chunks and encodes the first ones while Dagster's imports and
    # instance take the main thread (about 2 s of the start on 2 cores).
    ahead = start_encoding_ahead(settings)

    from dagster import DagsterInstance

    from jobping_pipeline.backfill import BackfillInterrupted, run_backfill

    timings = {"imports": _seconds_since_process_start()}
    clock = time.perf_counter()
    # SIGTERM (kill, a container stop) behaves like Ctrl-C: stop at a batch boundary, keep what
    # was committed. Dagster maps both to an interrupt inside each run.
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    try:
        instance = DagsterInstance.get()
    except BaseException:
        ahead.stop(wait=False)  # run_backfill stops it from here on
        raise
    with instance:
        _hold_storage_connections(instance)
        timings["Dagster instance"] = time.perf_counter() - clock
        try:
            result = run_backfill(
                settings,
                instance,
                say=lambda line: print(line, flush=True),
                defer_vector_indexes=args.defer_vector_indexes,
                timings=timings,
                ahead=ahead,
                started=started,
            )
        except BackfillInterrupted as stopped:
            print(
                f"stopped by a signal, {stopped.result.jobs_embedded} jobs embedded in the chunks finished "
                "before it: every vector written before the stop is "
                "committed with its state; the rest is still due. `jobping-pipeline backfill` continues.",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    for chunk_key, message in result.failed_chunks.items():
        print(f"chunk {chunk_key} failed: {message.strip().splitlines()[0]}", file=sys.stderr)
    if result.failed_chunks and all(failed_for_an_outage(message) for message in result.failed_chunks.values()):
        print(
            "jobping-pipeline: every failed chunk failed for the infrastructure (database, API or GPU), not "
            "for a job: no job was charged an attempt; run again once it is back (the sensor also retries)",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return 0 if result.complete else EXIT_INCOMPLETE


def failed_for_an_outage(message: str) -> bool:
    """A run's failure message names an infrastructure fault (faults.py) the asset raised."""
    return any(name in message for name in ("InfrastructureFault", "DatabaseUnavailable", "ApiUnavailable", "OperationalError"))


def _register(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from jobping_pipeline.backfill import register

    store, embedding_model = _configured()
    ensure_dagster_home()
    with DagsterInstance.get() as instance:
        changes, new_keys = register(store, instance, embedding_model.encoder())
    for change in changes:
        print(f"setup: {change}")
    keys = store.chunk_keys()
    print(
        f"register: {len(keys)} chunks ({len(new_keys)} new)"
        + (f", keys {keys[0]} to {keys[-1]}" if keys else "")
        + "; materialize them from the UI or with `jobping-pipeline backfill`"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from dagster import DagsterInstance

    from jobping_pipeline.backfill import format_duration
    from jobping_pipeline.status import collect_status, render

    store, embedding_model = _configured()
    model_id = embedding_model.spec().model_id
    try:
        ensure_dagster_home()
        instance = DagsterInstance.get()
    except Exception:  # no Dagster instance: everything but the ETA still works
        instance = None
    try:
        status, chunks = collect_status(store, model_id, instance)
    finally:
        if instance is not None:
            instance.dispose()
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
    else:
        print(render(status, chunks, format_duration))
    return 0 if status.complete else EXIT_INCOMPLETE


def _audit(args: argparse.Namespace) -> int:
    from jobping_pipeline.audit import audit
    from jobping_pipeline.progress import bar

    store, embedding_model = _configured()
    spec = embedding_model.spec()
    store.check_text_columns()
    with bar(store.audited_count(spec.model_id), "audit: text and vector digests") as sweep:
        with bar(0, "audit: embedding again", unit="text") as embedded:
            report = audit(
                store,
                spec,
                embedding_model.encoder,
                sample=args.sample,
                everything=args.all,
                on_row=lambda: sweep.update(1),
                on_embedded=embedded.update,
            )
    for problem in report.problems:
        print(f"job {problem.describe()}")
    coverage = store.coverage(spec.model_id)
    found = {str(problem.job_id) for problem in report.problems}
    for problem in store.problem_jobs(spec.model_id, limit=AUDIT_LISTED_NOT_FRESH):
        if problem.job_id not in found:
            print(f"job {problem.describe()} (not fresh by the state)")
    print(f"audit: {report.summary()} ({report.sweep_seconds:.1f} s digests, {report.model_seconds:.1f} s model)")
    verified = report.passed and coverage.complete
    if not verified:
        print(
            f"audit: not every eligible job holds the model's vector of its current text ({coverage.fresh} of "
            f"{coverage.eligible} fresh after the audit); the jobs found wrong are queued: the sensor's next runs "
            "or `jobping-pipeline backfill` repair them",
            file=sys.stderr,
        )
    return 0 if verified else EXIT_INCOMPLETE


def _prepare_model_change(args: argparse.Namespace) -> int:
    from jobping_pipeline.model_change import prepare_model_change

    store, embedding_model = _configured()
    change = prepare_model_change(store, embedding_model.encoder(), confirmed=args.yes)
    for line in change.lines:
        print(line)
    return 0 if change.done else EXIT_INCOMPLETE


def _backends(args: argparse.Namespace) -> int:
    """The measured paths of the configured model on this machine (measuring them if never done)."""
    from jobping_pipeline.models import ModelSpec, measured_choice, spec_from_settings
    from jobping_pipeline.models.choice import describe

    spec = spec_from_settings(load_settings())
    if not isinstance(spec, ModelSpec):
        raise ConfigError("JOBPING_PROVIDER=openai: the embeddings API has no local backends to measure")
    choice = measured_choice(spec, remeasure=args.measure, lossy=args.measure)
    for line in describe(choice):
        print(line)
    if spec.quantization != "none":
        print(
            f"JOBPING_QUANTIZATION={spec.quantization} is set: the runs use {spec.quantized_backend} "
            f"{spec.quantization} ({spec.model_id}), whatever was measured"
        )
    elif spec.backend != "auto":
        print(f"JOBPING_BACKEND={spec.backend} is set: the runs use it, whatever was measured")
    return 0


def _at_least(minimum: int):
    """An argparse type: a whole number no smaller than ``minimum``."""

    def whole_number(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{number} is less than {minimum}")
        return number

    return whole_number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobping-pipeline",
        description="Keep vector embeddings of the jobs table complete and fresh. "
        "Settings come from JOBPING_* environment variables (see docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    setup = commands.add_parser("setup", help="create the vector extension, embedding column, state schema and triggers")
    setup.add_argument("--index", choices=("hnsw",), help="also build an HNSW index for search")
    setup.set_defaults(handler=_setup)

    search = commands.add_parser("search", help="the jobs nearest to a query, by the same model")
    search.add_argument("query")
    search.add_argument("--limit", type=_at_least(1), default=10)
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(handler=_search)

    demo = commands.add_parser("demo-data", help="create jobping's jobs table if absent and load realistic postings")
    demo.add_argument("--jobs", type=_at_least(0), default=1000, help="how many postings (default 1000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--append", action="store_true", help="load even when the table already has jobs")
    demo.add_argument("--id-type", choices=("integer", "uuid"), default="integer", help="primary key type of a new table")
    demo.set_defaults(handler=_demo_data)

    register = commands.add_parser(
        "register", help="setup, then put unchunked jobs into chunks and register their partition keys with Dagster"
    )
    register.set_defaults(handler=_register)

    status = commands.add_parser(
        "status", help="coverage, what is left and an ETA; exits 1 below 100%% (for cron and CI)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    from jobping_pipeline.audit import DEFAULT_SAMPLE as DEFAULT_AUDIT_SAMPLE

    audit = commands.add_parser(
        "audit",
        help="verify that every eligible job holds the model's vector of its current text (digests of "
        "every fresh job's text and vector, a sample embedded again); exits 1, naming the jobs and queueing "
        "them for repair, when any does not",
    )
    audit.add_argument(
        "--sample", type=_at_least(0), default=DEFAULT_AUDIT_SAMPLE,
        help=f"how many jobs to embed again and compare by cosine (default {DEFAULT_AUDIT_SAMPLE})",
    )
    audit.add_argument("--all", action="store_true", help="embed every audited job again (slow: a full encode)")
    audit.set_defaults(handler=_audit)

    change = commands.add_parser(
        "prepare-model-change",
        help="get the column and state ready for the configured JOBPING_MODEL (then run a backfill)",
    )
    change.add_argument("--yes", action="store_true", help="confirm dropping the old vectors when the dimension changes")
    change.set_defaults(handler=_prepare_model_change)

    backends = commands.add_parser(
        "backends",
        help="the model's paths measured on this CPU (texts/s, x torch fp32, %% of the CPU's FMA peak) and the "
        "one JOBPING_BACKEND=auto uses",
    )
    backends.add_argument(
        "--measure", action="store_true", help="measure again, the int8 paths too (a minute or two; converting them, once)"
    )
    backends.set_defaults(handler=_backends)

    backfill = commands.add_parser("backfill", help="register chunks and embed every job that needs it, through Dagster")
    backfill.add_argument(
        "--defer-vector-indexes",
        action="store_true",
        help="drop HNSW/IVFFlat indexes on the embedding column during the backfill, rebuild them after",
    )
    backfill.set_defaults(handler=_backfill)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"jobping-pipeline: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as error:  # a known fault is one line with what to do; anything else is a bug
        described = describe_fault(error)
        if described is None:
            raise
        message, code = described
        print(f"jobping-pipeline: {message}", file=sys.stderr)
        return code


def _first_line(error: BaseException) -> str:
    from jobping_pipeline.settings import redact_url

    text = str(error).strip()
    return redact_url(text.splitlines()[0]) if text else type(error).__name__


def describe_fault(error: BaseException) -> tuple[str, int] | None:
    """One line saying what failed and what to do, and the exit code; None for an error that is
    not a known fault (a bug: its traceback is shown)."""
    import psycopg

    from jobping_pipeline.faults import InfrastructureFault
    from jobping_pipeline.models.openai_protocol import ApiRequestRefused, ApiUnavailable
    from jobping_pipeline.store import DatabaseUnavailable

    if isinstance(error, DatabaseUnavailable):
        return f"{_first_line(error)}; start the database or fix JOBPING_DATABASE_URL", EXIT_CONFIG
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return (
            f"permission denied: {_first_line(error)}; grant what docs/operations.md's 'Least privilege' lists, "
            "or run `jobping-pipeline setup` as the table's owner",
            EXIT_PERMISSION,
        )
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return (
            f"the jobs database went away: {_first_line(error)}; run the command again once it is back "
            "(everything committed before is kept)",
            EXIT_UNAVAILABLE,
        )
    if isinstance(error, ApiUnavailable):
        return (
            f"the embeddings API is unavailable: {_first_line(error)}; check OPENAI_BASE_URL and the "
            "service's status, then run again (no job is charged an attempt for an outage)",
            EXIT_UNAVAILABLE,
        )
    if isinstance(error, ApiRequestRefused) and error.status in (401, 403):
        return f"the embeddings API refused the credentials: {_first_line(error)}; check OPENAI_API_KEY", EXIT_CONFIG
    if isinstance(error, ApiRequestRefused):
        return f"the embeddings API refused a request: {_first_line(error)}; check JOBPING_MODEL", EXIT_CONFIG
    if isinstance(error, InfrastructureFault):
        return f"{_first_line(error)}; run again once it is fixed (no job was charged an attempt)", EXIT_UNAVAILABLE
    return None


def run() -> None:
    """The console script: :func:`main`, then a quick exit. Tearing down the interpreter with
    the model runtime and Dagster loaded takes 0.5-1 s and does nothing for the result: once
    main() has returned, every connection is closed and every write committed. The exit handlers
    still run (the embedded Postgres stops when its last process leaves; logs are flushed)."""
    import atexit

    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
    finally:
        os._exit(code)


if __name__ == "__main__":
    run()
