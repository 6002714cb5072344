"""The embedded server's life: shared by processes, stopped when the last one exits, even after
one of them was killed outright. Real server, real processes."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

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


def stopped(server: psutil.Process, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Users:
    """The processes using one new embedded server, started with :meth:`join`."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.processes: list[subprocess.Popen] = []
        self.server: psutil.Process | None = None

    def join(self) -> subprocess.Popen:
        process = join(self.data_dir)
        self.processes.append(process)
        if self.server is None:
            self.server = psutil.Process(int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]))
        return process


@pytest.fixture
def users(tmp_path_factory):
    """Whatever a test leaves running (its processes, the server) is stopped after it."""
    users = Users(tmp_path_factory.mktemp("pg"))
    yield users
    for process in users.processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    if users.server is not None and users.server.is_running():
        users.server.kill()


def test_the_server_stops_with_the_last_process_even_after_one_was_killed(users):
    first = users.join()
    leave(users.join())
    assert not stopped(users.server, seconds=1), "stopped while another process still used it"
    kill(first)
    leave(users.join())
    assert stopped(users.server), "the last process exited and the server still runs"


def test_a_process_killed_after_the_last_one_joined_is_dropped_when_that_one_exits(users):
    last = users.join()
    kill(users.join())  # after `last` joined: only its exit can see that this one is gone
    leave(last)
    assert stopped(users.server), "the last process exited and the server still runs"
