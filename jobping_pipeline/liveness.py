"""Runs whose worker is gone are seen as ended.

A run killed with SIGKILL, by the OOM killer, a reboot or a lost node never reports its end:
Dagster shows it STARTED for ever, and its chunks would count as in flight for ever (and, with
the embedding pool's limit of one run, every queued run would wait behind it). Each run of
``job_embeddings`` therefore beats a heartbeat in the jobs database while it works
(:func:`heartbeat`); the sensor ends the runs that went silent (:func:`gone_runs`): it marks them
failed in Dagster, counts the failure against their chunks (backoff) and requests their work
again. Run monitoring in dagster.yaml covers what happens before a run starts (start and cancel
timeouts); the heartbeat covers every launcher, the CLI's in-process runs included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Iterator

from jobping_pipeline.store import JobStore
from jobping_pipeline.store.runs import DEAD_AFTER_SECONDS, HEARTBEAT_SECONDS, START_GRACE_SECONDS, RunLiveness

logger = logging.getLogger(__name__)

# The installation (meta 'installation': one jobs database and state schema) a run belongs to,
# on every run the sensor or the CLI starts: a run that never beat is judged only by its own
# installation's sensor (a run with a heartbeat row is known by the row).
INSTALLATION_TAG = "jobping/installation"


@contextlib.contextmanager
def heartbeat(store: JobStore, run_id: str, every: float = HEARTBEAT_SECONDS, log=logger) -> Iterator[None]:
    """Beat for ``run_id`` every ``every`` seconds while the block runs. The first beat is taken
    before the block starts (a database that is down fails the run here, before the model loads);
    a beat that fails later is logged and tried again: a run outlives a short database restart."""
    beats = JobStore(store.settings)  # its own connections: the run's store may be in a session
    host, pid = socket.gethostname(), os.getpid()
    beats.beat(run_id, host, pid)
    stopped = threading.Event()

    def keep_beating() -> None:
        failing = False
        while not stopped.wait(every):
            try:
                beats.beat(run_id, host, pid)
                failing = False
            except Exception as error:  # noqa: BLE001 - a missed beat is retried; the run decides its own fate
                if not failing:
                    log.warning(f"heartbeat of run {run_id} failed ({error}); retrying every {every:g} s")
                failing = True

    thread = threading.Thread(target=keep_beating, name="jobping-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join(timeout=every + 5)
        try:
            beats.end_beating(run_id)
        except Exception as error:  # noqa: BLE001 - the run's own outcome matters more
            log.warning(f"could not record the end of run {run_id}'s heartbeat: {error}")


@dataclass(frozen=True)
class GoneRun:
    """A run Dagster shows as started whose worker is gone."""

    run_id: str
    reason: str
    finished_its_work: bool  # the asset had returned: nothing to count against its chunks


def gone_runs(started: dict[str, float], beats: dict[str, RunLiveness]) -> list[GoneRun]:
    """Of the runs Dagster shows as started (run id -> seconds since they started), those whose
    worker is gone: silent for longer than DEAD_AFTER_SECONDS, or, never having beaten, started
    more than START_GRACE_SECONDS ago."""
    gone = []
    for run_id, running_for in started.items():
        beat = beats.get(run_id)
        if beat is None:
            if running_for > START_GRACE_SECONDS:
                gone.append(GoneRun(run_id, f"its worker never sent a heartbeat in {running_for:.0f} s", False))
        elif beat.gone:
            gone.append(
                GoneRun(
                    run_id,
                    f"its worker sent no heartbeat for {beat.silent_seconds:.0f} s (more than {DEAD_AFTER_SECONDS} s): "
                    "killed, out of memory, or its machine lost",
                    beat.ended,
                )
            )
    return gone
