"""The embedded server's life: shared by processes, stopped when the last one exits, even after
one of them was killed outright. Real server, real processes."""

import os
import signal
import subprocess
import sys
import time

import psutil

JOIN = (
    "import sys, time; from pathlib import Path; "
    "from jobping_pipeline.embedded_postgres import embedded_server_url; "
    "embedded_server_url(Path(sys.argv[1]), 'postgres'); print('joined', flush=True); "
    "time.sleep(float(sys.argv[2]))"
)


def join(data_dir, stay_seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", JOIN, str(data_dir), str(stay_seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "joined"
    return process


def postmaster(data_dir) -> psutil.Process:
    return psutil.Process(int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]))


def test_a_process_killed_outright_does_not_keep_the_server_up(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("pg")
    killed = join(data_dir, 600)
    server = postmaster(data_dir)
    try:
        assert join(data_dir, 0).wait(60) == 0
        time.sleep(1)
        assert server.is_running(), "stopped while another process still used it"
        os.kill(killed.pid, signal.SIGKILL)  # no exit handler runs: it stays on the server's list
        killed.wait()
        assert join(data_dir, 0).wait(60) == 0
        deadline = time.monotonic() + 30
        while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the last process exited and the server still runs"
            time.sleep(0.1)
    finally:
        if server.is_running():
            server.kill()
