"""Failure of parts: the store's connections cut (through a TCP proxy on loopback) and the
broker restarted during a run; nothing is lost and nothing stays queued."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from scheduler.store.db import make_engine, session_scope
from scheduler.store.models import DagRun, TaskInstance
from tests.conftest import wait_for
from tests.e2e.procs import Service, hw

pytestmark = pytest.mark.slow

DAGS = """
    from datetime import datetime, timedelta
    from scheduler import DAG
    from scheduler.operators import BashOperator

    for n in range(3):
        with DAG(f"parts_{n}", schedule="@once", start_date=datetime(2024, 1, 1),
                 default_args={"retries": 3, "retry_delay": timedelta(seconds=1)}) as dag:
            previous = None
            for i in range(10):
                t = BashOperator(task_id=f"t{i}", bash_command="sleep 0.3")
                if previous is not None:
                    previous >> t
                previous = t
        globals()[dag.dag_id] = dag
"""
TOTAL = 30


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops every connection and refuses
    new ones until :meth:`restore` (what a network partition or a restarting server does).

    Two things matter for the test to measure Headwater and not the proxy: forwarded sockets
    have no timeout (an idle connection, such as a LISTEN, lives as long as both ends want),
    and a pair of sockets is closed only once *both* of its pumps have stopped, so a file
    descriptor is never reused for a new connection while a pump still writes to it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._pairs: dict[tuple[socket.socket, socket.socket], int] = {}  # pair -> live pumps
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the connect timeout must not become an idle timeout
            pair = (client, upstream)
            with self._lock:
                self._pairs[pair] = 2
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket], src: socket.socket,
              dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in pair:  # wakes the other pump; the descriptors stay ours until it is done
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._pairs[pair] -= 1
                last = self._pairs[pair] == 0
                if last:
                    del self._pairs[pair]
            if last:
                for s in pair:
                    s.close()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


@pytest.fixture
def pg_proxy(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


def _unfinished(engine: Engine) -> str:
    with session_scope(engine, readonly=True) as s:
        rows = s.execute(select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.state,
                                TaskInstance.try_number, TaskInstance.hostname,
                                TaskInstance.pid)
                         .where(TaskInstance.state != "success")
                         .order_by(TaskInstance.dag_id, TaskInstance.task_id)).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


def _wait_all_green(pg_url: str, services: list[Service]) -> None:
    engine = make_engine(pg_url)
    try:
        def done() -> bool:
            with session_scope(engine, readonly=True) as s:
                states = s.scalars(select(DagRun.state)).all()
            return len(states) == 3 and all(st in ("success", "failed") for st in states)

        try:
            wait_for(done, timeout=240, interval=0.2, message="every run to finish")
        except AssertionError as exc:
            report = [str(exc), "--- task instances not succeeded:", _unfinished(engine),
                      *(svc.diagnose() for svc in services)]
            raise AssertionError("\n".join(report)) from None
        with session_scope(engine, readonly=True) as s:
            assert set(s.scalars(select(DagRun.state)).all()) == {"success"}
            states = dict(s.execute(select(TaskInstance.state, func.count())
                                    .group_by(TaskInstance.state)).all())
        assert states == {"success": TOTAL}  # none lost, none queued or running
    finally:
        engine.dispose()


def _succeeded(pg_url: str) -> int:
    engine = make_engine(pg_url)
    try:
        with session_scope(engine, readonly=True) as s:
            return s.scalar(select(func.count()).where(TaskInstance.state == "success")) or 0
    finally:
        engine.dispose()


def test_store_connections_cut_mid_run_recover_without_lost_or_stuck_tasks(
        prod_env, pg_url, pg_proxy, redis_broker, write_dag, services) -> None:
    proxy, proxied_url = pg_proxy
    env = {**prod_env, "HEADWATER__DATABASE__SQL_ALCHEMY_CONN": proxied_url,
           "HEADWATER__CELERY__BROKER_URL": redis_broker.url}
    write_dag("parts.py", DAGS)
    hw(env, "db", "migrate")
    worker = services(env, "worker", "--concurrency", "2", name="worker")
    scheduler = services(env, "scheduler", name="scheduler")
    wait_for(lambda: _succeeded(pg_url) >= 5, timeout=120, interval=0.2,
             message="the runs to get going")
    proxy.cut()
    time.sleep(3)  # the outage itself (shorter than the task heartbeat timeout)
    proxy.restore()
    _wait_all_green(pg_url, [scheduler, worker])
    assert scheduler.proc.poll() is None and worker.proc.poll() is None, "a service died"


def test_broker_restart_mid_run_loses_no_task(
        prod_env, pg_url, redis_broker, write_dag, services) -> None:
    env = {**prod_env, "HEADWATER__CELERY__BROKER_URL": redis_broker.url}
    write_dag("parts.py", DAGS)
    hw(env, "db", "migrate")
    worker = services(env, "worker", "--concurrency", "2", name="worker")
    scheduler = services(env, "scheduler", name="scheduler")
    wait_for(lambda: _succeeded(pg_url) >= 5, timeout=120, interval=0.2,
             message="the runs to get going")
    redis_broker.stop()
    time.sleep(3)  # the broker is down: publishing fails and is retried
    redis_broker.start()
    _wait_all_green(pg_url, [scheduler, worker])
    assert scheduler.proc.poll() is None and worker.proc.poll() is None, "a service died"
