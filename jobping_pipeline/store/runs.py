"""Run liveness: each run of ``job_embeddings`` beats a heartbeat in the jobs database, so the
sensor can tell a run that is working from one whose worker is gone (SIGKILL, an OOM kill, a
reboot, a lost node) and that Dagster still shows as STARTED. The database's clock is the only
clock: beats and the sensor's comparisons both use ``now()``."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from jobping_pipeline.store.catalog import Names, StoreBase

# A run beats this often; one silent for DEAD_AFTER_SECONDS is gone. A started run that never beat
# (its worker died while starting) is gone once START_GRACE_SECONDS have passed since its start.
HEARTBEAT_SECONDS = 10
DEAD_AFTER_SECONDS = 90
START_GRACE_SECONDS = 300
FORGET_AFTER = "1 day"


@dataclass(frozen=True)
class RunLiveness:
    """What the heartbeats say of one run."""

    run_id: str
    silent_seconds: float  # since its last beat
    ended: bool  # its asset returned or raised (the worker may still be reporting to Dagster)

    @property
    def gone(self) -> bool:
        return self.silent_seconds > DEAD_AFTER_SECONDS


def beat(names: Names) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (run_id, host, pid) VALUES (%(run_id)s, %(host)s, %(pid)s) "
        "ON CONFLICT (run_id) DO UPDATE SET beat_at = now()"
    ).format(names.state("run_heartbeats"))


def end_beating(names: Names) -> sql.Composed:
    return sql.SQL("UPDATE {} SET beat_at = now(), ended_at = now() WHERE run_id = %s").format(
        names.state("run_heartbeats")
    )


def liveness(names: Names) -> sql.Composed:
    return sql.SQL(
        "SELECT run_id, extract(epoch FROM now() - beat_at)::float8, ended_at IS NOT NULL "
        "FROM {} WHERE run_id = ANY(%s)"
    ).format(names.state("run_heartbeats"))


def forget_old_heartbeats(names: Names) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE beat_at < now() - interval {}").format(
        names.state("run_heartbeats"), sql.Literal(FORGET_AFTER)
    )


class RunStore(StoreBase):
    def beat(self, run_id: str, host: str, pid: int) -> None:
        """The run is alive (the first beat also records where it runs)."""
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(beat(self.names()), {"run_id": run_id, "host": host, "pid": pid})

    def end_beating(self, run_id: str) -> None:
        with self.connect(autocommit=True, vectors=False) as connection:
            connection.execute(end_beating(self.names()), (run_id,))

    def run_liveness(self, run_ids: list[str]) -> dict[str, RunLiveness]:
        """The heartbeats of these runs; a run that never beat is absent (``gone_runs`` judges it
        by the time since its start instead)."""
        if not run_ids:
            return {}
        with self.connect(autocommit=True, vectors=False) as connection:
            rows = connection.execute(liveness(self.names()), (list(run_ids),)).fetchall()
        return {run_id: RunLiveness(run_id, silent, ended) for run_id, silent, ended in rows}

    def forget_old_heartbeats(self) -> int:
        with self.connect(autocommit=True, vectors=False) as connection:
            return connection.execute(forget_old_heartbeats(self.names())).rowcount
