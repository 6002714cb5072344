"""The embedded server's life: shared by processes, stopped when the last one exits, even after
one of them was killed outright. Real server, real processes."""

import os
import signal
import subprocess
import sys
import time

import psutil

# Joins the server, says so, and exits normally (exit handlers run) once its stdin closes.
JOIN = (
    "import sys; from pathlib import Path; "
    "from jobping_pipeline.embedded_postgres import embedded_server_url; "
    "embedded_server_url(Path(sys.argv[1]), 'postgres'); print('joined', flush=True); sys.stdin.read()"
)


def join(data_dir) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", JOIN, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "joined"
    return process


def leave(process: subprocess.Popen) -> None:
    process.stdin.close()
    assert process.wait(60) == 0


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)  # no exit handler runs: it stays on the server's list
    process.wait()


def postmaster(data_dir) -> psutil.Process:
    return psutil.Process(int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]))


def stopped(server: psutil.Process, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_all(server: psutil.Process, processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    if server.is_running():
        server.kill()


def test_the_server_stops_with_the_last_process_even_after_one_was_killed(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pg")
    first = join(data_dir)
    server = postmaster(data_dir)
    processes = [first]
    try:
        processes.append(second := join(data_dir))
        leave(second)
        assert not stopped(server, seconds=1), "stopped while another process still used it"
        kill(first)
        processes.append(last := join(data_dir))
        leave(last)
        assert stopped(server), "the last process exited and the server still runs"
    finally:
        stop_all(server, processes)


def test_a_process_killed_after_the_last_one_joined_is_dropped_when_that_one_exits(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pg")
    last = join(data_dir)
    server = postmaster(data_dir)
    processes = [last]
    try:
        processes.append(killed := join(data_dir))
        kill(killed)  # after `last` joined: only its exit can see that this one is gone
        leave(last)
        assert stopped(server), "the last process exited and the server still runs"
    finally:
        stop_all(server, processes)
