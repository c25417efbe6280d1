"""`headwater worker` outlives a Celery worker that gives up (as Celery does on some broker
failures): it starts a new one, and stops for good only when asked to."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from scheduler.cli.worker import supervise_celery_worker

    starts = sys.argv[1]

    def run():
        n = len(open(starts).read()) if os.path.exists(starts) else 0
        with open(starts, "a") as fh:
            fh.write("x")
        if n == 0:
            raise SystemExit(3)  # the first worker dies on its own
        os.kill(os.getppid(), signal.SIGTERM)  # then someone stops the service
        time.sleep(30)

    supervise_celery_worker(run)
""")


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_the_service(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(starts)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert starts.read_text() == "xx"
    assert "starting a new one" in proc.stderr
