"""The fork server: children forked from a snapshot of the worker, their pipes and their ends."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection, Pipe

import pytest

from scheduler.forkserver import ForkServer, ForkServerGone

SNAPSHOT = {"value": "before start"}


def _echo(conn: Connection, suffix: str) -> None:
    """Send back what the snapshot held when the server was forked, plus ``suffix``."""
    conn.send_bytes(f"{SNAPSHOT['value']} {suffix} {os.getpid()}".encode())


def _exit_with(conn: Connection, code: int) -> None:
    os._exit(code)


def _wait_for_term(conn: Connection) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
    conn.send_bytes(b"ready")
    time.sleep(30)


def _ignore_term(conn: Connection) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send_bytes(b"ready")
    time.sleep(30)


def test_children_start_from_the_snapshot_and_report_their_end() -> None:
    server = ForkServer(_echo)
    SNAPSHOT["value"] = "at start"
    server.start()
    SNAPSHOT["value"] = "after start"  # not seen by the server's children
    try:
        child = server.spawn("one")
        text, pid = child.conn.recv_bytes().decode().rsplit(" ", 1)
        assert text == "at start one"
        assert child.pid == int(pid) != server.pid
        with pytest.raises(EOFError):  # its pipe closes when it exits
            child.conn.recv_bytes()
        assert os.WIFEXITED(child.wait()) and os.WEXITSTATUS(child.wait()) == 0
        # The next child comes from the same snapshot; a restart takes a new one.
        assert server.spawn("two").conn.recv_bytes().decode().startswith("at start two")
        server.start()
        assert server.spawn("three").conn.recv_bytes().decode().startswith("after start three")
    finally:
        server.stop()
        SNAPSHOT["value"] = "before start"
    assert not server.alive


def test_a_child_exit_code_and_signal_are_reported() -> None:
    server = ForkServer(_exit_with)
    try:
        assert os.WEXITSTATUS(server.spawn(3).wait()) == 3
        killer = ForkServer(_wait_for_term)
        try:
            child = killer.spawn()
            assert child.conn.recv_bytes() == b"ready"
            status = child.stop(grace=5)
            assert status is not None and os.WEXITSTATUS(status) == 7  # its handler ran
        finally:
            killer.stop()
    finally:
        server.stop()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    server = ForkServer(_ignore_term)
    try:
        child = server.spawn()
        assert child.conn.recv_bytes() == b"ready"
        assert child.stop(grace=0.3) is None  # still alive then: SIGKILLed
        status = child.wait()
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        server.stop()


def test_a_dead_server_is_reported_and_replaced() -> None:
    server = ForkServer(_echo)
    server.start()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    with pytest.raises(ForkServerGone):
        server.spawn("lost").wait()
    assert not server.alive
    try:  # the next spawn starts a new server
        assert server.spawn("again").conn.recv_bytes().decode().startswith("before start again")
    finally:
        server.stop()


def test_the_server_does_not_hold_the_connections_it_is_told_to_close() -> None:
    # A worker's pipe to its scheduler: the scheduler must see EOF when the worker dies, even
    # while the worker's fork server lives.
    scheduler_end, worker_end = Pipe()
    server = ForkServer(_echo, close_in_server=[worker_end])
    server.start()
    try:
        worker_end.close()
        with pytest.raises(EOFError):
            scheduler_end.recv()
    finally:
        server.stop()
