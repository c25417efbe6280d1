"""Waking the scheduler when something happens elsewhere (a trigger from the CLI or the UI,
a parse that found a new version), so that it does not have to poll for it.

Each scheduler binds a Unix datagram socket in ``$HEADWATER_HOME/run/``; :func:`notify` sends a
byte to each. A lost datagram costs nothing but latency: the loop also looks at the store
on a slow timer.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path


def _run_dir(home: Path) -> Path:
    return Path(home) / "run"


class WakeupSocket:
    """The receiving end, owned by one scheduler process."""

    def __init__(self, home: Path) -> None:
        run_dir = _run_dir(home)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / f"scheduler-{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # A Unix socket path is limited to ~107 bytes; fall back to polling when it is longer.
        try:
            self._sock.bind(str(self.path))
        except OSError:
            self._sock.close()
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> int:
        count = 0
        while True:
            try:
                self._sock.recv(64)
                count += 1
            except (BlockingIOError, OSError):
                return count

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def notify(home: Path) -> None:
    """Wake every scheduler bound under ``home``; never raises."""
    run_dir = _run_dir(home)
    if not run_dir.is_dir():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in run_dir.glob("scheduler-*.sock"):
            try:
                sock.sendto(b"!", str(path))
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    path.unlink()  # a scheduler that died without cleaning up
            except OSError:
                pass
