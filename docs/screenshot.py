"""Screenshots of the Dagster UI for the README: starts dagster-webserver on this folder's
instance (run `make demo` first), loads pages in headless Chromium, writes small PNGs to docs/.

    python docs/screenshot.py        # needs Debian's chromium (apt-get install chromium)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PAGES = {
    "ui-partitions.png": "/assets/job_embeddings?view=partitions&partition=000001",
    "ui-checks.png": "/assets/job_embeddings?view=checks&checkDetail=coverage",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    chromium = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME", str(PROJECT))}
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    # The first-visit "join the community" dialog would cover the page. Dagster has no public
    # API to dismiss it; the webserver only checks that $DAGSTER_HOME/.nux/nux.yaml exists.
    nux = Path(env["DAGSTER_HOME"]) / ".nux"
    nux.mkdir(exist_ok=True)
    (nux / "nux.yaml").write_text("seen: 1\n")
    webserver = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-m", "jobping_pipeline", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        for name, path in PAGES.items():
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1280,760",
                     "--virtual-time-budget=20000", f"--screenshot={PROJECT / 'docs' / name}",
                     f"http://127.0.0.1:{port}{path}"],
                    check=True, capture_output=True, timeout=120,
                )
            print(f"docs/{name}")
    finally:
        os.killpg(webserver.pid, signal.SIGTERM)
        webserver.wait(30)


if __name__ == "__main__":
    main()
