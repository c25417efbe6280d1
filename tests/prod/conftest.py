"""Fixtures of the production path: a PostgreSQL database per test, brokers of its own, and
`headwater scheduler` / `headwater worker` processes.

Isolation: every test gets a fresh database (``tests.prod.pg``), a Redis server of its own on a
free port (started and stopped here), or a RabbitMQ virtual host of its own on the machine's
RabbitMQ (added and deleted with ``rabbitmqctl``), so runs never see each other's data or
messages.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service
from tests.prod import pg

RABBIT = "127.0.0.1:5672"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A redis-server of the test's own, with an append-only file so that a restart keeps the
    queued messages (as a production broker must)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (apt-get install redis-server)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port), timeout=20, message="redis-server to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


@pytest.fixture
def redis_broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def rabbit_broker() -> Iterator[str]:
    """An AMQP URL on a virtual host of the test's own."""
    vhost = f"hw_test_{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBIT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg.temporary_database() as url:
        yield url


@pytest.fixture
def prod_env(env: dict[str, str], pg_url: str) -> dict[str, str]:
    """The test's environment on PostgreSQL with the Celery executor (broker set per test)."""
    env.update({
        "HEADWATER__DATABASE__SQL_ALCHEMY_CONN": pg_url,
        "HEADWATER__CORE__EXECUTOR": "celery",
        "HEADWATER__SCHEDULER__HEARTBEAT_INTERVAL": "1",
        "HEADWATER__SCHEDULER__TASK_HEARTBEAT_TIMEOUT": "10",
        "HEADWATER__SCHEDULER__SCHEDULER_HEARTBEAT_TIMEOUT": "10",
    })
    return env


@pytest.fixture
def services(home: Path) -> Iterator[Callable[..., Service]]:
    """Start `headwater ...` services; every one still running is stopped at the end."""
    started: list[Service] = []

    def _start(env: dict[str, str], *args: str, name: str) -> Service:
        svc = Service(env, *args, log=home / f"{name}.log")
        started.append(svc)
        return svc

    yield _start
    for svc in started:
        svc.stop()
