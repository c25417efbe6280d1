"""A fork server: a small idle process that forks the attempts' processes for a worker.

Why. A worker that forks its attempts itself pays for it twice per attempt: the fork copies its
page tables, and afterwards every page the worker writes (its store transactions, its pipes)
is still shared with the attempt's process and is copied on that first write. A 200-task
fan-out measured 1,650 such faults per attempt in the worker, about 2 ms of CPU, half of its
cost per attempt. The fork server is forked from the worker once (holding the DAGs the worker
has loaded) and then does nothing but fork, so its pages stay clean: the worker writes its own
pages in peace, and the attempt's process starts from the same memory as before.

Protocol. The worker and the server share a control pipe. For each attempt the worker sends
the attempt's arguments and, by ``SCM_RIGHTS``, one end of a fresh pipe of the attempt's own;
the server forks, the child runs ``main(conn, *args)`` on that pipe, and the server reports
``("started", pid)`` then ``("exited", pid, status)`` on the control pipe. Each attempt's pipe
closes when its process exits, exactly as with a direct fork, so the worker's supervision
(results, callbacks, timeouts, heartbeats) does not change.

The server runs one child at a time (a worker supervises one attempt at a time). It exits when
the control pipe closes (its worker is gone) or when :meth:`ForkServer.stop` asks.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, Pipe
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

#: What the server's child runs: ``main(conn, *args)``, with ``conn`` the attempt's pipe.
ChildMain = Callable[..., None]


_STOP = b"stop"  # (a pickle never starts so)


class ForkServerGone(ChildProcessError):
    """The fork server died: its child's fate is unknown."""


def fork_running(body: Callable[[], None]) -> int:
    """Fork a child that runs ``body()`` and exits: status 0, or 1 with the traceback on
    stderr if it raised. It never returns into the caller's code (``os._exit``: no cleanup
    of the parent's state runs twice). Returns the child's pid, in the parent."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException:  # noqa: BLE001 - the child's end is reported by its status
            code = 1
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


class ForkServer:
    """Forks children from a snapshot of this process taken by :meth:`start`.

    ``close_in_server`` are connections of this process the server and its children must not
    hold (a worker's pipe to its scheduler: the scheduler notices a dead worker by that pipe
    closing). ``prepare`` runs in the server before it serves: what it sets up once, every
    child inherits instead of doing it itself.
    """

    def __init__(self, main: ChildMain, *, close_in_server: Sequence[Connection] = (),
                 prepare: Callable[[], None] | None = None) -> None:
        self._main = main
        self._close_in_server = list(close_in_server)
        self._prepare = prepare
        self._ctl: Connection | None = None
        self.pid: int | None = None

    @property
    def alive(self) -> bool:
        return self._ctl is not None

    def start(self) -> None:
        """Fork the server now: its children start from this process's memory as it is."""
        if self._ctl is not None:
            self.stop()
        ours, theirs = Pipe(duplex=True)
        gc.freeze()  # keep the server's collector off the inherited heap (no page copies)

        def serve() -> None:
            ours.close()
            for conn in self._close_in_server:
                with contextlib.suppress(OSError):
                    conn.close()
            self._serve(theirs)

        pid = fork_running(serve)
        theirs.close()
        self._ctl, self.pid = ours, pid

    def stop(self) -> None:
        """Ask the server to exit and reap it (after its current child, if any)."""
        ctl, pid = self._ctl, self.pid
        self._ctl = self.pid = None
        if ctl is None or pid is None:
            return
        with contextlib.suppress(OSError):
            ctl.send_bytes(_STOP)
        ctl.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def spawn(self, *args: Any) -> ServedChild:
        """Fork a child running ``main(conn, *args)``; returns it with this side's pipe.
        ``args`` are pickled. Raises :class:`ForkServerGone` if the server died (the caller may
        :meth:`start` a new one and try again)."""
        if self._ctl is None or self.pid is None:
            self.start()
        assert self._ctl is not None and self.pid is not None
        ours, theirs = Pipe(duplex=True)
        try:
            self._ctl.send_bytes(pickle.dumps(args))
            send_handle(self._ctl, theirs.fileno(), self.pid)
        except OSError as exc:
            self._forget()
            raise ForkServerGone(f"the fork server is gone ({exc})") from exc
        finally:
            theirs.close()
        return ServedChild(ours, self)

    def _forget(self) -> None:
        """The server died: drop it (reaped if it was ours); the next spawn starts another."""
        ctl, pid = self._ctl, self.pid
        self._ctl = self.pid = None
        if ctl is not None:
            ctl.close()
        if pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _recv(self) -> Any:
        assert self._ctl is not None
        try:
            return self._ctl.recv()
        except (EOFError, OSError) as exc:
            self._forget()
            raise ForkServerGone("the fork server died") from exc

    def _poll(self, timeout: float) -> bool:
        assert self._ctl is not None
        return self._ctl.poll(timeout)

    # -- the server process ------------------------------------------------------------------

    def _serve(self, ctl: Connection) -> None:
        # The worker decides when attempts stop; the server only forks and reports.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self._prepare is not None:
            self._prepare()
            gc.freeze()
        while True:
            try:
                # The arguments stay pickled until the child: each object the server made
                # would be one more page it writes after every fork.
                args = ctl.recv_bytes()
                if args == _STOP:
                    return
                fd = recv_handle(ctl)
            except (EOFError, OSError):
                return  # the worker is gone
            def child(fd: int = fd, args: bytes = args) -> None:
                # The child says it started, not the server: the server then touches (and
                # copies) almost none of the memory it shares with the child.
                # (pickle.dumps, not Connection.send: its ForkingPickler is built per message
                # and costs the child ~0.1 ms and dozens of copied pages.)
                ctl.send_bytes(pickle.dumps(("started", os.getpid())))
                ctl.close()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._main(Connection(fd), *pickle.loads(args))

            pid = fork_running(child)
            os.close(fd)
            try:
                _, status = os.waitpid(pid, 0)
                ctl.send_bytes(pickle.dumps(("exited", pid, status)))
            except OSError:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                return


class ServedChild:
    """A child of a :class:`ForkServer`: its pipe (``conn``), its pid and its end."""

    def __init__(self, conn: Connection, server: ForkServer) -> None:
        self.conn = conn
        self._server = server
        self._pid: int | None = None
        self._status: int | None = None
        self._exited = False

    def _read(self, timeout: float | None) -> bool:
        """Read the server's next report about this child; False if none came in time."""
        if timeout is not None and not self._server._poll(timeout):
            return False
        message = self._server._recv()
        if message[0] == "started":
            self._pid = message[1]
        else:
            self._pid, self._status, self._exited = message[1], message[2], True
        return True

    @property
    def pid(self) -> int:
        while self._pid is None:
            self._read(None)
        return self._pid

    @property
    def started(self) -> bool:
        """Whether the child has said it started (its first act, before any of its work)."""
        return self._pid is not None

    def wait(self) -> int:
        """The child's exit status (as ``os.waitpid`` gives it), once it has exited. Raises
        :class:`ForkServerGone` if the server died first."""
        while not self._exited:
            self._read(None)
        assert self._status is not None
        return self._status

    def stop(self, grace: float) -> int | None:
        """SIGTERM the child, then SIGKILL it if it has not exited within ``grace`` seconds.
        Returns its exit status if it exited within the grace period."""
        while not self._exited and self._read(0):
            pass  # (so that an exited child's pid, which may be reused, is not signalled)
        if self._exited:
            return self._status
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while not self._exited:
            if not self._read(max(0.0, deadline - time.monotonic())):
                break
        if self._exited:
            return self._status
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        return None
